# Two commands on a fresh machine:  `make lab`  (the workbench)  and  `make test`  (every test).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# CPU build of torch unless a CUDA GPU is present (the plain wheel is a multi-GB CUDA build).
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1; then echo "torch"; else echo "torch==2.13.0"; fi)

.PHONY: lab test install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[lab,test]"
	$(BIN)/python -m pip check
	touch $@

install: $(BIN)/.installed

lab: install
	$(BIN)/jupyter lab notebooks/00_quickstart.ipynb

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q --nbval-lax tests notebooks

clean:
	rm -rf $(VENV) .pytest_cache

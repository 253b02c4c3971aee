# Two commands on a fresh machine:  `make lab`  (the workbench)  and  `make test`  (every test).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# CPU build of torch unless a CUDA GPU is present (the plain wheel is a multi-GB CUDA build).
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1; then echo "torch"; else echo "torch==2.13.0"; fi)

.PHONY: lab test install browser-deps clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[lab,test]"
	$(BIN)/python -m pip check
	touch $@

install: $(BIN)/.installed

# Browser tests drive Debian's chromium with Playwright (never `playwright install`: it downloads a browser).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	    else echo "The browser tests need Debian's chromium: sudo apt-get install chromium"; exit 1; fi; }

lab: install
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root,) notebooks/00_quickstart.ipynb

test: install browser-deps
	HF_HUB_OFFLINE=1 ACESTEP_NOTEBOOK_TINY=1 $(BIN)/python -m pytest -q --nbval-lax tests notebooks

clean:
	rm -rf $(VENV) .pytest_cache

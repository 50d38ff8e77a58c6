# The two commands of the README:
#   make demo   set up, synthesise the demo corpus, train the tiny recipe on CPU, evaluate on Test1
#   make test   set up and run the whole test suite
# Set-up installs espeak-ng (Debian/Ubuntu, via apt-get when missing) and a virtual environment
# in .venv with a CPU build of torch and the linter ruff pinned here; pyproject.toml itself only asks for ranges.
# make test also installs Debian's chromium (when missing), which the web page's tests drive.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
RUFF ?= ruff==0.17.5
DEMO_DIR ?= runs/demo
DEMO_CORPUS ?= data/demo_corpus
DEMO_ARGS ?=
CORPUS_ARGS ?=
BIN = $(VENV)/bin
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test lint format setup espeak chromium clean gpu-wheels gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-run the install whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]" "$(RUFF)"
	touch $@

# $(call apt-install,COMMAND,PACKAGE): install PACKAGE with apt-get unless COMMAND is on the PATH.
apt-install = command -v $(1) >/dev/null || { \
  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(2) >/dev/null; }

espeak:
	@$(call apt-install,espeak-ng,espeak-ng)

chromium:
	@$(call apt-install,chromium,chromium)

setup: $(VENV)/.installed espeak

$(DEMO_CORPUS)/Labels/labels_consensus.csv: | setup
	$(BIN)/emosphere demo-corpus --output $(DEMO_CORPUS) $(CORPUS_ARGS)

demo: setup $(DEMO_CORPUS)/Labels/labels_consensus.csv
	$(BIN)/emosphere train --config recipes/demo/tiny.yaml data.corpus=$(DEMO_CORPUS) output_dir=$(DEMO_DIR) --no-eval $(DEMO_ARGS)
	$(BIN)/emosphere evaluate --model $(DEMO_DIR)/model --split Test1 --quiet

test: setup chromium
	$(BIN)/python -m pytest -q

# ruff's lint rules and format (pyproject.toml); .ci/run fails on either. make format rewrites the files.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(DEMO_DIR) $(DEMO_CORPUS)

# The GPU check (docs/benchmarks.md, "GPU check"). Here: make gpu-wheels (the wheels the GPU machine lacks,
# into .whl/). There: make gpu-check OUT=<folder>, with its python3; on a CPU, a dry run with tiny models:
#   make gpu-check PYTHON=.venv/bin/python OUT=/tmp/gpu-check GPU_CHECK_ARGS=--dry-run
OUT ?= gpu-check
GPU_CHECK_ARGS ?=

gpu-wheels:
	sh bench/fetch_wheels.sh

gpu-check:
	$(PYTHON) bench/gpu_check.py --output $(OUT) $(GPU_CHECK_ARGS)

# The two commands of the README:
#   make demo   set up, synthesise the demo corpus, train the tiny recipe on CPU, evaluate on Test1
#   make test   set up and run the whole test suite
# Set-up installs espeak-ng (Debian/Ubuntu, via apt-get when missing) and a virtual environment
# in .venv with a CPU build of torch pinned here; pyproject.toml itself only asks for a range.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
DEMO_DIR ?= runs/demo
DEMO_CORPUS ?= data/demo_corpus
DEMO_ARGS ?=
CORPUS_ARGS ?=
BIN = $(VENV)/bin
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test setup espeak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-run the install whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

espeak:
	@command -v espeak-ng >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng >/dev/null; }

setup: $(VENV)/.installed espeak

$(DEMO_CORPUS)/Labels/labels_consensus.csv: | setup
	$(BIN)/emosphere demo-corpus $(DEMO_CORPUS) $(CORPUS_ARGS)

demo: setup $(DEMO_CORPUS)/Labels/labels_consensus.csv
	$(BIN)/emosphere train --config recipes/demo/tiny.yaml data.corpus=$(DEMO_CORPUS) output_dir=$(DEMO_DIR) --no-eval $(DEMO_ARGS)
	$(BIN)/emosphere evaluate --model $(DEMO_DIR)/model --split Test1 --output-dir $(DEMO_DIR) --quiet

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO_DIR) $(DEMO_CORPUS)

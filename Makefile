# Two entry points: `make test` and `make demo`. Both bootstrap .venv from scratch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench venv clean

venv: $(STAMP)

# torch goes in first and pinned: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml setup.py $(wildcard src/readtax/csrc/*.c src/readtax/csrc/*.h)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/readtax demo -o demo-out --force

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Bytecode compiled up front: an editable install leaves it to the first import, and with
# PYTHONDONTWRITEBYTECODE set every run would compile the package again (~45 ms a command).
bench: $(STAMP)
	$(BIN)/python -m compileall -q src/readtax
	bash benchmarks/run_all.sh

clean:
	rm -rf $(VENV) demo-out build *.egg-info

# Two commands for a fresh machine: `make run` (the demo) and `make test` (lint, types, tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.parnn-installed
LINT_PATHS := src tests $(wildcard benchmarks)

.PHONY: setup run test lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first (the CPU build that lies on this disk), then the package, so pip keeps it.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[dev,mpi,cluster]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/parnn demo

lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

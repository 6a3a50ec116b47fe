# The two commands a new user needs: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint unit integration e2e bench chaos install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Migrate, create the demo tenant, serve the API and run the worker (SQLite by default).
run: $(STAMP)
	$(BIN)/dunwell run

## The whole suite: unit, integration (SQLite and PostgreSQL), end-to-end.
test: $(STAMP)
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m unit

integration: $(STAMP)
	$(BIN)/pytest -m integration

e2e: $(STAMP)
	$(BIN)/pytest -m e2e

## Benchmarks (not tests): JSON into benchmarks/results/, medians on stdout.
bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/actions.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/memory.py

## Two workers on PostgreSQL, SIGKILLed mid-flight: one JSON line; fails on a duplicate or a loss.
chaos: $(STAMP)
	$(BIN)/python checks/chaos.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks checks
	$(BIN)/ruff format --check src tests benchmarks checks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

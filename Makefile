# The two commands of the README. Everything a fresh Debian machine with Python 3.11 needs is
# installed from here: the virtualenv, the Python packages, and (for tests, as root) the Debian
# packages listed in tests/system-packages.txt.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit system-deps services clean

run: $(VENV)/.installed
	$(BIN)/presencebot run

test: $(VENV)/.installed-dev system-deps services lint typecheck unit

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/pytest

system-deps:
	@sh tests/install-system-packages.sh tests/system-packages.txt

services:
	@sh tests/start-services.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

# The two commands of the README:
#   make book   fresh machine -> .venv, install, default catalog, quick suite, book
#   make test   fresh machine -> .venv, install, unit tests + notebook validation + book + browser
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= quick
NBVAL := --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=1800

.PHONY: venv catalog suite book test test-unit test-notebooks bench clean

venv: $(BIN)/.installed
$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

catalog: venv
	$(BIN)/python -m mrlib.catalog build synthetic

suite: venv
	$(BIN)/python -m mrlib.suite run --profile $(PROFILE)

book: catalog suite
	$(BIN)/python -m mrlib.book --run runs/$(PROFILE)
	@echo "results index: runs/$(PROFILE)/results.json"
	@echo "executed notebooks: runs/$(PROFILE)/"
	@echo "book: book/_build/html/index.html"

test: venv
	$(BIN)/python -m pytest $(NBVAL) tests notebooks

test-unit: venv
	$(BIN)/python -m pytest tests -m "not book"

test-notebooks: venv
	$(BIN)/python -m pytest $(NBVAL) notebooks

bench: venv
	$(BIN)/python -m mrlib.bench all

clean:
	rm -rf book/_build runs .pytest_cache

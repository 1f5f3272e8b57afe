# Everything runs from a virtual environment that these targets create themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: the demo (bundled emulator + daemon), until Ctrl-C
run: $(STAMP)
	$(BIN)/onc-pipeline demo

## test: lint, type-check and the whole test suite
test: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/ruff format --check pipeline tests benchmarks
	$(BIN)/mypy pipeline
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/mypy pipeline

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

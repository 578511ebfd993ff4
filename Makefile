# ownstream — every target sets itself up: a fresh machine needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
QUICK ?=
# Playwright drives the system Chromium; its own browser download is never used.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m ownstream.dev.demo

test: setup
	tools/ensure-services
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider

bench: setup
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,)
	$(BIN)/python -m bench.versus $(if $(QUICK),--quick,)

lint: setup
	$(BIN)/ruff check ownstream tests bench
	$(BIN)/mypy ownstream tests bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

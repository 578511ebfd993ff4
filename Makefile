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

# Two passes: everything on SQLite (the store contract and the PostgreSQL-only tests on both
# backends), then the read-surface, owner, owner-query, blob and Spotify end-to-end suites
# again on PostgreSQL.
BOTH_BACKENDS := tests/api tests/owner tests/queries tests/blobs tests/test_spotify_end_to_end.py

test: setup
	tools/ensure-services
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider
	OWNSTREAM_TEST_BACKEND=postgresql $(BIN)/python -m pytest -n 2 -p no:cacheprovider $(BOTH_BACKENDS)

bench: setup
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,)
	$(BIN)/python -m bench.scale $(if $(QUICK),--quick,)
	$(BIN)/python -m bench.versus $(if $(QUICK),--quick,)

lint: setup
	$(BIN)/ruff check ownstream tests bench
	$(BIN)/mypy ownstream tests bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Two commands: `make drill` and `make test`. Each creates or refreshes .venv first
# (reinstalling only when pyproject.toml changed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: drill test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rollback-console needs Python 3.11 or newer (set PYTHON=python3.x)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

drill: $(STAMP)
	$(BIN)/rollback-console drill

lint: $(STAMP)
	$(BIN)/ruff check app screens widgets tests $(wildcard bench)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) lint
	@command -v tmux >/dev/null 2>&1 || sh .ci/install-tmux.sh
	@command -v pgbackrest >/dev/null 2>&1 && test -x /usr/lib/postgresql/15/bin/postgres || sh .ci/install-pgbackrest.sh
	$(BIN)/python -m pytest -n 2 --durations=15

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

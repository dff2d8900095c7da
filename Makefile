# `make run` shows taskmill working; `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Installing again only when pyproject.toml changed keeps every target fast.
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint bench bench-redis bench-postgres clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(BIN)/taskmill --url sqlite:///taskmill.db demo

lint: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/sqlite_bench.py

# taskmill and eight peers on a private redis-server; peers install into bench/.venvs/.
bench-redis: install
	$(BIN)/python bench/redis_bench.py

# taskmill, procrastinate and Oban, each in a database of its own on the local PostgreSQL;
# peers install into bench/.venvs/.
bench-postgres: install
	$(BIN)/python bench/postgres_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist taskmill.db taskmill.db-wal taskmill.db-shm
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# `make run` shows taskmill working; `make test` is what CI runs (.ci/run).
PYTHON ?= python3
# run waits for the first of two processes to end (wait -n).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Installing again only when pyproject.toml changed keeps every target fast.
INSTALLED := $(VENV)/.installed

.PHONY: install run demo test test-fast lint bench bench-redis bench-redis-memory bench-postgres clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The API server and a worker over the example tasks, on SQLite; Ctrl-C stops both. The
# worker runs a scheduler too (--scheduler), or the schedules made in the dashboard or the
# API would never fire; as the leader it also rescues the jobs of lost workers and prunes
# old ones. Delayed jobs need no loop: claims take due jobs first.
RUN := $(BIN)/taskmill --url sqlite:///taskmill.db --app taskmill.examples:app
# The server's port and the worker's metrics port: `make run PORT=8001 METRICS_PORT=9102`.
PORT ?= 8000
METRICS_PORT ?= 9101
run: install
	@echo "taskmill on sqlite:///taskmill.db: the API server and one worker with a scheduler (Ctrl-C stops both)"
	@echo "  dashboard  http://127.0.0.1:$(PORT)/"
	@echo "  API        http://127.0.0.1:$(PORT)/api/v1/jobs"
	@echo "  docs       http://127.0.0.1:$(PORT)/docs"
	@echo "  metrics    http://127.0.0.1:$(PORT)/metrics (queues)  http://127.0.0.1:$(METRICS_PORT)/metrics (worker)"
	@echo "  try        curl -X POST localhost:$(PORT)/api/v1/jobs -H 'content-type: application/json' -d '{\"type\": \"echo\", \"payload\": {\"message\": \"hi\"}}'"
	@trap 'kill -TERM $$server $$worker 2>/dev/null; wait' INT TERM; \
	$(RUN) worker --scheduler --metrics-port $(METRICS_PORT) & worker=$$!; \
	$(RUN) server --port $(PORT) & server=$$!; \
	wait -n; kill -TERM $$server $$worker 2>/dev/null; wait

demo: install
	$(BIN)/taskmill --url sqlite:///taskmill.db demo

lint: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The same without the tests marked slow (processes that wait out leases, ticks or restarts):
# for the edit-and-test loop; `make test` before a push.
test-fast: lint
	$(BIN)/pytest -m "not slow"

bench: install
	$(BIN)/python bench/sqlite_bench.py

# taskmill and eight peers on a private redis-server; peers install into bench/.venvs/.
bench-redis: install
	$(BIN)/python bench/redis_bench.py

# Redis bytes per pending job, and memory while 1,000,000 jobs go through (it must plateau).
bench-redis-memory: install
	$(BIN)/python bench/redis_memory.py

# taskmill, procrastinate and Oban, each in a database of its own on the local PostgreSQL;
# peers install into bench/.venvs/.
bench-postgres: install
	$(BIN)/python bench/postgres_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist taskmill.db taskmill.db-wal taskmill.db-shm
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Two commands for a fresh clone: `make test` and `make demo`.
# Both create .venv when it is missing and install the project into it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_HOST ?= 127.0.0.1
DEMO_PORT ?= 8000
DEMO_ENV := DJANGO_SETTINGS_MODULE=demo_project.settings

.PHONY: test demo lint services browser bench bench-load

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip || true
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy aixyz_sessions
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

services:
	@bash scripts/services.sh

# Debian's chromium + chromedriver for the browser test (installed when missing
# and possible; never fails the run by itself).
browser:
	@bash scripts/browser.sh

test: $(STAMP) lint services browser
	$(BIN)/python -m pytest

# The demo ("x402 sessions"): SQLite + the local facilitator unless the
# environment says otherwise (see docs/demo.md). Serves Django, /mcp and /ws/tools/.
demo: $(STAMP)
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEMO_ENV) $(BIN)/python manage.py demo_setup --url http://$(DEMO_HOST):$(DEMO_PORT)
	$(DEMO_ENV) $(BIN)/python -m uvicorn demo_project.asgi:application \
		--host $(DEMO_HOST) --port $(DEMO_PORT) --log-level warning

# Each benchmark prints its figures beside a baseline measured in the same run.
bench: $(STAMP) services
	$(BIN)/python benchmarks/memory_store.py
	$(BIN)/python benchmarks/redis_store.py
	$(BIN)/python benchmarks/db_store.py
	$(BIN)/python benchmarks/payments.py
	$(BIN)/python benchmarks/peer_fastapi.py
	$(BIN)/python benchmarks/admin_pages.py
	$(BIN)/python benchmarks/operations.py

# N paying clients against uvicorn workers with sessions in Redis (long form).
bench-load: $(STAMP) services
	$(BIN)/python benchmarks/load.py --workers 1 2

# smsgw — the two commands a newcomer runs: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck services services-down bench bench-quick faults clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --require-hashes -r requirements.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)

## make run: virtualenv from the lock file, migrate, serve on 127.0.0.1:8080 (SQLite, embedded broker, SMSC simulator)
run: $(STAMP)
	$(BIN)/smsgw dev

## make test: real PostgreSQL and ActiveMQ on loopback (installed when missing), then the whole suite
test: $(STAMP) services
	@set -a; eval "$$(scripts/services.sh env)"; set +a; \
	  $(BIN)/ruff check app tests && \
	  $(BIN)/mypy && \
	  $(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check app tests

typecheck: $(STAMP)
	$(BIN)/mypy

services:
	scripts/services.sh up

services-down:
	scripts/services.sh down

clean:
	rm -rf $(VENV) smsgw.db smsgw.db-shm smsgw.db-wal

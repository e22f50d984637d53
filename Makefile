# smsgw — the two commands a newcomer runs: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test audit lint typecheck services services-down bench bench-quick faults clean

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
	  $(BIN)/ruff check app tests bench && \
	  $(BIN)/mypy && \
	  $(BIN)/lint-imports && \
	  scripts/audit.sh && \
	  $(BIN)/pytest -q -p no:cacheprovider && \
	  $(BIN)/python -m bench.run --quick && \
	  $(BIN)/python -m bench.faults --short

## make bench: the benchmarks at full size (about 15 minutes); figures in bench/results, table in bench/README.md.
## Each run starts its own PostgreSQL (synchronous_commit=on, pg_stat_statements) and ActiveMQ (bench/cluster.py)
## and prints, per scenario, msg/s, CPU per 1,000 messages of each process, row versions and top statements.
## e2e-smpp sends 1,000 recipients per request, e2e-smpp-single one (64 keep-alive connections).
## One worker process for the full gateway (measured faster than two on 2 cores), two for the API-only run.
## (BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS="e2e-smpp --messages 20000")
BENCH_ARGS ?= accept bulk e2e-smpp e2e-smpp-single
bench: $(STAMP) services
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.run accept --api-only --workers 2
	$(BIN)/python -m bench.run e2e-http --messages 20000 --workers 2 --stall-timeout 180
	$(BIN)/python -m bench.report

bench-quick: $(STAMP) services
	$(BIN)/python -m bench.run --quick

## make faults: the six fault scenarios at full size (10,000 messages, ActiveMQ down 30 s, PostgreSQL restarted
## and its postmaster killed -9) on a private PostgreSQL; fails on any known failure too. CI runs --short
faults: $(STAMP) services
	$(BIN)/python -m bench.faults
	$(BIN)/python -m bench.report

## make audit: pip-audit over requirements.lock (fails on a known vulnerability)
audit: $(STAMP)
	scripts/audit.sh

lint: $(STAMP)
	$(BIN)/ruff check app tests bench

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

services:
	scripts/services.sh up

services-down:
	scripts/services.sh down

clean:
	rm -rf $(VENV) smsgw.db smsgw.db-shm smsgw.db-wal

# smsgw — the two commands a newcomer runs: `make run` and `make test`.
SHELL := /bin/bash
# The interpreter .venv is made with: the distribution's optimised python3.11 when there is one (scripts/python.sh).
PY ?= $(shell scripts/python.sh)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test audit tools lint typecheck services services-down bench bench-quick bench-kannel faults clean

# uv installs the 95 hash-locked packages in 3-11 s where pip took 75-110 s (both measured here on an
# empty cache); pip stays as the fallback where no uv wheel exists. Nothing is resolved: every pin and
# hash comes from requirements.lock.
$(STAMP): requirements.lock requirements-bootstrap.lock pyproject.toml
	@test -x $(BIN)/python || { echo "make: creating the virtualenv $(VENV) with $(PY)"; $(PY) -m venv $(VENV); }
	@echo "make: installing the hash-locked dependencies into $(VENV) (about 20 s with uv; 2-4 min with the pip fallback)"
	@if $(BIN)/pip install --disable-pip-version-check -q --require-hashes -r requirements-bootstrap.lock; then \
	  $(BIN)/uv pip install --python $(BIN)/python --require-hashes -r requirements.lock && \
	  $(BIN)/uv pip install --python $(BIN)/python --no-deps -e . ; \
	else \
	  echo "make: no uv wheel for this platform: installing with pip (2-4 min)"; \
	  $(BIN)/pip install --disable-pip-version-check --progress-bar off --require-hashes -r requirements.lock && \
	  $(BIN)/pip install --disable-pip-version-check -q --no-deps -e . ; \
	fi
	@touch $(STAMP)
	@echo "make: $(VENV) is ready"

## make run: virtualenv from the lock file, migrate, serve on 127.0.0.1:8080 (SQLite, embedded broker, SMSC simulator)
## (RUN_ARGS passes options to `smsgw dev`, e.g. make run RUN_ARGS="--smsc-port 2776")
RUN_ARGS ?=
run: $(STAMP)
	@$(BIN)/smsgw dev $(RUN_ARGS)

## make test: real PostgreSQL and ActiveMQ on loopback, the tools tests drive (installed when missing), then
## the whole suite. No dependency audit here: it needs an advisory database this network may not reach (make audit).
test: $(STAMP) services tools
	@set -a; eval "$$(scripts/services.sh env)"; set +a; \
	  $(BIN)/ruff check app tests bench && \
	  $(BIN)/mypy && \
	  $(BIN)/lint-imports && \
	  $(BIN)/pytest -q -p no:cacheprovider && \
	  $(BIN)/python -m bench.run --quick && \
	  $(BIN)/python -m bench.faults --short

## make bench: the benchmarks at full size (about 7 minutes on the 2-core machine); figures in bench/results, table in bench/README.md.
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

## make bench-kannel: Kannel 1.4.5 (Debian; scripts/setup-kannel.sh installs it, root or sudo) against the same
## simulator and load, one and 1,000 recipients per request: the reference issue 15 compares us with
bench-kannel: $(STAMP)
	scripts/setup-kannel.sh
	$(BIN)/python -m bench.kannel
	$(BIN)/python -m bench.kannel --per-request 1000

## make faults: the six fault scenarios at full size (10,000 messages, ActiveMQ down 30 s, PostgreSQL restarted
## and its postmaster killed -9) on a private PostgreSQL; fails on any known failure too. CI runs --short
faults: $(STAMP) services
	$(BIN)/python -m bench.faults
	$(BIN)/python -m bench.report

## make audit: pip-audit over requirements.lock; fails on a known vulnerability, and fails when the advisory
## database cannot be reached (a machine without it cannot audit)
audit: $(STAMP)
	scripts/audit.sh

lint: $(STAMP)
	$(BIN)/ruff check app tests bench

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

## make tools: hadolint, docker-compose and chromium, which the container and /docs tests drive
tools:
	scripts/setup-tools.sh

services:
	scripts/services.sh up

services-down:
	scripts/services.sh down

clean:
	rm -rf $(VENV) smsgw.db smsgw.db-shm smsgw.db-wal

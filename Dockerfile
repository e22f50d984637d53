# smsgw image: `docker build -t smsgw .`; `docker compose up` runs it (docker-compose.yml).
# One image, several roles: `smsgw serve` (default), `smsgw migrate`, `smsgw simulate-smsc`, ...

# ---- builder: a virtualenv holding only the hash-locked runtime dependencies and the project ----
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# Dependencies first, so that a code change does not reinstall them. requirements-runtime.lock is the
# runtime half of requirements.lock (same versions and hashes, without the dev extras; see
# scripts/check_container.sh); the build backend is hash-locked too and used without build isolation,
# so nothing unpinned is downloaded.
COPY requirements-runtime.lock docker/build-requirements.lock ./
RUN pip install --require-hashes -r requirements-runtime.lock \
 && pip install --require-hashes -r build-requirements.lock

COPY pyproject.toml README.md alembic.ini ./
COPY migrations ./migrations
COPY app ./app
# Editable on purpose: `smsgw migrate` finds alembic.ini and migrations/ next to the app/ package
# (app/db/migrate.py), so the code stays in /app and the venv points at it. The final stage keeps
# both paths unchanged.
RUN pip install --no-deps --no-build-isolation --check-build-dependencies -e . \
 && python -m compileall -q app migrations

# ---- final: the venv and the code, run as an unprivileged user ----
FROM python:3.11-slim

RUN groupadd --system --gid 10001 smsgw \
 && useradd --system --uid 10001 --gid smsgw --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin smsgw

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

# SMSGW_HOST: inside a container the service must listen on every interface (the contract's
# 127.0.0.1 default is for a host install); publishing decides who can reach it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SMSGW_HOST=0.0.0.0 \
    SMSGW_PORT=8080

WORKDIR /app
# Numeric, so that an orchestrator (runAsNonRoot) can tell it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080

# No curl in slim: the standard library asks /health/live (the process answers; readiness is /health/ready).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('SMSGW_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["smsgw"]
CMD ["serve"]

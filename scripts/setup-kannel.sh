#!/usr/bin/env bash
# Installs Debian's Kannel (bearerbox, smsbox) for the reference benchmark `python -m bench.kannel`.
# Idempotent: does nothing when bearerbox is already on the PATH (or in /usr/sbin). Needs root, or sudo.
#
# The package's own service is not used: bench/kannel.py starts bearerbox and smsbox itself with a config
# in a temp dir, every listener on 127.0.0.1. Where apt would start the packaged service (a host with
# systemd and no policy-rc.d denying it), it is stopped and disabled again, since its default
# /etc/kannel/kannel.conf listens on every interface.
set -euo pipefail

if command -v bearerbox >/dev/null 2>&1 || [ -x /usr/sbin/bearerbox ]; then
    echo "kannel: $(command -v bearerbox || echo /usr/sbin/bearerbox) already installed"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup-kannel: needs root or sudo" >&2; exit 1; }
    SUDO=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# Another apt (setup-tools.sh, services.sh) may hold the lock: wait for it rather than fail.
APT=("${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300)
if ! apt-cache show kannel >/dev/null 2>&1; then
    "${APT[@]}" update -qq
fi
"${APT[@]}" install -y -qq --no-install-recommends kannel >/dev/null

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    "${SUDO[@]}" systemctl disable --now kannel >/dev/null 2>&1 || true
fi

echo "kannel: installed $(dpkg-query -W -f '${Version}' kannel) ($(command -v bearerbox || echo /usr/sbin/bearerbox))"

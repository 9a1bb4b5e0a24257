#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only where a binary is missing.
# Fails loudly (non-zero) if a package cannot be installed: tests never skip for want of a tool.
set -euo pipefail

need=()
ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v runuser >/dev/null || need+=(util-linux)
# The dashboard's browser tests drive Debian's Chromium (Playwright never downloads one).
[ -x /usr/bin/chromium ] || need+=(chromium)
# The venv is made with Debian's python3 when there is one (see the Makefile): it needs venv.
if [ -x /usr/bin/python3 ] && command -v dpkg >/dev/null; then
  dpkg -s python3-venv >/dev/null 2>&1 || need+=(python3-venv)
fi

if [ ${#need[@]} -eq 0 ]; then
  echo "deps: all present"
  exit 0
fi
echo "deps: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
# The Debian package starts a cluster of its own; the tests start their own servers instead.
$SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null
[ -x /usr/bin/chromium ]

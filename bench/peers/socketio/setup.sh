#!/usr/bin/env bash
# Installs the Socket.IO peer's dependencies, idempotently: node and npm
# (Debian packages, when missing) and the locked node modules (npm ci,
# only when node_modules does not match package-lock.json).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "socketio setup: installing ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
cd "$here"
# npm ci leaves a copy of the lock file in node_modules; when it matches,
# the install is current.
if [ -f node_modules/.package-lock.json ] && [ -d node_modules/socket.io ] \
   && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error

#!/usr/bin/env bash
# Installs the documentation examples' node modules (jose, for
# issue_token.mjs), idempotently: npm ci only when node_modules does not
# match package-lock.json. Run by scripts/deps.sh test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v npm >/dev/null 2>&1; then
  echo "docs/examples setup: installing nodejs npm" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
cd "$here"
if [ -f node_modules/.package-lock.json ] && [ -d node_modules/jose ] \
   && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error

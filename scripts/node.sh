#!/usr/bin/env bash
# Prints the path of a Node.js recent enough for the JavaScript SDK's build
# and tests (clients/js, tests/js, tests/e2e), providing one when the
# machine has none. This is the one place that knows which Node the
# project needs: playwright-core needs Node >= 20, and the SDK promises
# Node 20+, while Debian 12's nodejs package is Node 18.
#
#   scripts/node.sh      # prints e.g. /usr/bin/node on stdout
#
# stdout carries that path and nothing else (callers capture it): every
# installer's output goes to stderr.
#
# Order, first suitable wins (major version >= NODE_MIN):
#   1. `node` on PATH;
#   2. the pinned Node (NODE_VERSION) installed earlier into .toolchain/node;
#   3. install it from the npm registry: the package node-linux-<arch> holds
#      the official Linux binary (npm checks its integrity against the
#      registry). npm itself comes from Debian (apt-get install npm) when
#      the machine has none; it runs on either Node.
# Idempotent: once a Node is there, a run installs nothing.
set -euo pipefail

NODE_MIN=20
NODE_VERSION=20.20.2

root=$(cd "$(dirname "$0")/.." && pwd)
tc="$root/.toolchain/node"
say() { echo "node.sh: $*" >&2; }

recent_enough() { # node binary
  local v
  v=$("$1" --version 2>/dev/null) || return 1
  v=${v#v}
  [ "${v%%.*}" -ge "$NODE_MIN" ] 2>/dev/null
}

if command -v node >/dev/null 2>&1 && recent_enough "$(command -v node)"; then
  command -v node; exit 0
fi
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) say "no Node >= $NODE_MIN and no packaged binary for $(uname -m)"; exit 2 ;;
esac
bin="$tc/node_modules/node-linux-$arch/bin/node"
if [ -x "$bin" ] && recent_enough "$bin"; then echo "$bin"; exit 0; fi

if ! command -v npm >/dev/null 2>&1; then
  say "installing nodejs npm (Debian) to fetch Node $NODE_VERSION"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q --no-install-recommends nodejs npm >&2
fi
say "installing Node $NODE_VERSION into $tc"
mkdir -p "$tc"
npm install --prefix "$tc" --no-audit --no-fund --no-save --loglevel=error \
  "node-linux-$arch@$NODE_VERSION" >&2
if ! recent_enough "$bin"; then say "installed Node does not run: $bin"; exit 2; fi
echo "$bin"

#!/usr/bin/env bash
# The JavaScript side of Herald: the SDK (clients/js), its tests, the Node
# integration tests (tests/js) and the browser tests (tests/e2e).
#
#   scripts/js.sh build        npm ci (when needed) and build clients/js:
#                              dist/ (ES modules, declarations, the demo site
#                              in dist/www); fails over the size budget
#   scripts/js.sh test         the SDK's unit tests (node --test), on the
#                              SDK that `build` made
#   scripts/js.sh js-integration [FILES]
#                              the Node integration tests in tests/js (all
#                              *.test.mjs, or FILES) against real herald,
#                              Redis, nginx and FerretDB, on the SDK that
#                              `build` made (HERALD_BIN: the herald binary,
#                              default build/bin/herald)
#   scripts/js.sh e2e [FILES]  the browser tests in tests/e2e (headless Debian
#                              chromium, playwright-core) against real
#                              herald and FerretDB (HERALD_BIN, default
#                              build/bin/herald; screenshots in
#                              E2E_ARTIFACTS, default build/e2e-artifacts),
#                              on the SDK and demo site `build` made
#   scripts/js.sh deps DIR...  npm ci in each DIR (when needed; relative to
#                              the repository)
#   scripts/js.sh node ARGS    runs the project's Node (scripts/node.sh)
#
# Every step runs the Node that scripts/node.sh provides (>= 20), with npm
# from the machine, and is idempotent: npm ci runs only when node_modules
# is older than package-lock.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
node=$("$root/scripts/node.sh")
export PATH="$(dirname "$node"):$PATH"
if ! command -v npm >/dev/null 2>&1; then
  echo "js.sh: installing npm (Debian)" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q --no-install-recommends npm >&2
fi

deps() { # dir
  local d=$1
  if [ -f "$d/node_modules/.package-lock.json" ] \
     && [ "$d/node_modules/.package-lock.json" -nt "$d/package-lock.json" ]; then
    return 0
  fi
  (cd "$d" && npm ci --no-audit --no-fund --loglevel=error >&2)
}

what=${1:-build}; shift || true
case "$what" in
  build) deps "$root/clients/js"; cd "$root/clients/js" && exec "$node" build.mjs "$@" ;;
  test)  deps "$root/clients/js"; cd "$root/clients/js"
         [ -f dist/herald-client.js ] || { echo "js.sh: build the SDK first (scripts/js.sh build)" >&2; exit 2; }
         exec "$node" --test --test-timeout=30000 "$@" test/*.test.mjs ;;
  js-integration)
         [ -f "$root/clients/js/dist/herald-client.js" ] || { echo "js.sh: build the SDK first (scripts/js.sh build)" >&2; exit 2; }
         deps "$root/clients/js"; deps "$root/tests/js"; cd "$root/tests/js"
         # The files wait on servers far more than they compute: run them
         # side by side (node --test's default is one per core but one).
         [ $# -gt 0 ] || set -- *.test.mjs
         exec "$node" --test --test-concurrency=6 --test-reporter=spec "$@" ;;
  e2e)   [ -f "$root/clients/js/dist/www/herald-client.js" ] || { echo "js.sh: build the SDK first (scripts/js.sh build)" >&2; exit 2; }
         deps "$root/tests/e2e"; cd "$root/tests/e2e"
         # One herald and one browser per file: they mostly wait, so the
         # files run side by side.
         [ $# -gt 0 ] || set -- *.test.mjs
         exec "$node" --test --test-concurrency=4 --test-reporter=spec "$@" ;;
  deps)  for d in "$@"; do case "$d" in /*) deps "$d" ;; *) deps "$root/$d" ;; esac; done ;;
  node)  exec "$node" "$@" ;;
  *) echo "js.sh: unknown step '$what' (build, test, js-integration, e2e, deps, node)" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Installs what Herald needs to build, run and test, idempotently.
#   scripts/deps.sh build   packages to build and run the server (python3
#                           and PyYAML convert docs/openapi.yaml at build)
#   scripts/deps.sh test    plus what the test suite needs, including a
#                           go >= 1.26 (scripts/go.sh) for FerretDB and the
#                           Centrifugo peer, and schemathesis in a venv
#                           (scripts/schemathesis.sh)
#   scripts/deps.sh bench   build packages plus what `make bench` needs
#                           (matplotlib for bench/report.py)
#   scripts/deps.sh --list PROFILE
#                           prints the profile's Debian packages, one a line,
#                           and installs nothing (scripts/check_deps.sh)
# Debian packages are installed with apt-get (as root, or through sudo);
# nothing is done when everything is already present.
set -euo pipefail
list=0
if [ "${1:-}" = --list ]; then list=1; shift; fi
what=${1:-build}
case "$what" in
  build|test|bench) ;;
  *) echo "deps: unknown profile '$what' (build, test or bench)" >&2; exit 2 ;;
esac

build_pkgs=(build-essential cmake ninja-build pkg-config
  libwebsockets-dev libuv1-dev libjansson-dev libmsgpack-dev libconfig-dev
  libssl-dev libhiredis-dev libmongoc-dev libbson-dev uthash-dev zlib1g-dev
  libhttp-parser-dev libcurl4-openssl-dev python3 python3-yaml)
# python3-venv: the schemathesis venv (scripts/schemathesis.sh);
# python3-jsonschema: test_api_openapi.py checks answers against the OpenAPI
# document; python3-requests and nodejs: docs/examples/ (test_api_docs.py).
# python3-cryptography and python3-jwt (PyJWT): keys and tokens of
# test_auth_jwt.py. chromium: the browser tests (tests/e2e) drive Debian's
# /usr/bin/chromium, never a browser downloaded by playwright.
test_pkgs=(libcriterion-dev python3 python3-matplotlib python3-pytest python3-websockets python3-msgpack python3-pymongo
  python3-prometheus-client python3-cryptography python3-jwt
  redis-server openssl curl util-linux iproute2 clang libclang-rt-14-dev llvm
  python3-venv python3-requests python3-jsonschema nodejs
  chromium)

# The bench profile: /usr/bin/python3 renders bench/report.py's plots.
bench_pkgs=(python3 python3-matplotlib)

pkgs=("${build_pkgs[@]}")
[ "$what" = test ] && pkgs+=("${test_pkgs[@]}")
[ "$what" = bench ] && pkgs+=("${bench_pkgs[@]}")
if [ "$list" = 1 ]; then printf '%s\n' "${pkgs[@]}"; exit 0; fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ "$what" = test ]; then "$(dirname "$0")/../docs/examples/setup.sh"; fi  # jose for docs/examples/issue_token.mjs
if [ "$what" = test ]; then "$(dirname "$0")/js.sh" deps clients/js tests/js tests/e2e; fi  # Node >= 20 (scripts/node.sh) and the npm packages of the SDK, its Node tests and the browser tests
if [ "$what" = test ]; then "$(dirname "$0")/../bench/peers/socketio/setup.sh"; fi  # herald-bench Socket.IO peer
if [ "$what" = test ]; then "$(dirname "$0")/../bench/peers/nchan/setup.sh"; fi  # herald-bench Nchan peer (nginx + nchan)
if [ "$what" = test ]; then "$(dirname "$0")/go.sh" >/dev/null; fi  # Go >= 1.26 for the two Go builds below (downloads the pinned toolchain when missing)
if [ "$what" = test ]; then "$(dirname "$0")/../bench/peers/centrifugo/setup.sh"; fi  # herald-bench Centrifugo peer (go build, ~2.5 min cold)
if [ "$what" = test ]; then "$(dirname "$0")/ferretdb/setup.sh"; fi  # FerretDB, the MongoDB stand-in for durable history tests (go build, ~2 min cold)
if [ "$what" = test ]; then "$(dirname "$0")/schemathesis.sh" >/dev/null; fi  # schemathesis (PyPI, pinned) in .toolchain/schemathesis for test_api_openapi.py

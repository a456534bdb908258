#!/usr/bin/env bash
# Prints the path of the schemathesis command the API tests use
# (tests/integration/test_api_openapi.py), installing it first when needed.
#
#   scripts/schemathesis.sh      # prints .../.toolchain/schemathesis/bin/schemathesis
#
# Debian 12 refuses pip installs into the system python (PEP 668), so
# schemathesis lives in a venv of Debian's python3 under .toolchain/
# (ignored by git), installed from the pinned scripts/schemathesis-
# requirements.txt. python3-venv (the test profile of scripts/deps.sh) is
# installed with apt-get when missing. Idempotent: when the venv holds what
# the requirements file says (a copy of it is kept in the venv), nothing is
# downloaded and the run takes a fraction of a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/scripts/schemathesis-requirements.txt"
venv="$root/.toolchain/schemathesis"
py=/usr/bin/python3
say() { echo "schemathesis.sh: $*" >&2; }

if [ -x "$venv/bin/schemathesis" ] && cmp -s "$req" "$venv/requirements.installed"; then
  echo "$venv/bin/schemathesis"
  exit 0
fi
[ -x "$py" ] || { say "$py not found: scripts/deps.sh test installs python3"; exit 2; }
if ! "$py" -c "import ensurepip, venv" 2>/dev/null; then
  say "installing python3-venv"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends python3-venv
fi
# A venv left half-made by an interrupted run is made again.
rm -rf "$venv"
mkdir -p "$root/.toolchain"
say "creating $venv (schemathesis from PyPI, pinned)"
"$py" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --no-input -r "$req" >&2
"$venv/bin/schemathesis" --version >/dev/null
cp "$req" "$venv/requirements.installed"
echo "$venv/bin/schemathesis"

#!/usr/bin/env bash
# Builds FerretDB (github.com/FerretDB/FerretDB, the version pinned as a Go
# tool dependency in tool/go.mod and tool/go.sum) into bin/ferretdb, the
# MongoDB-protocol server that the integration tests use as Herald's durable
# history store (SQLite backend, see start.sh). Idempotent: nothing is done
# when bin/ferretdb was built from the current tool/go.mod and tool/go.sum.
#
#   setup.sh [--force]
#
# Needs Go >= 1.24, which scripts/go.sh provides (a go on the machine, or
# the project's pinned toolchain, downloaded into .toolchain/ when missing),
# and the Go module proxy on a cold module cache. A cold build (download +
# compile) takes a few minutes on 2 cores; later runs return at once. Prints
# one line on success:
#   ferretdb v1.24.2 built|up to date: /path/to/bin/ferretdb
# and exits 2 when no Go can be provided, 1 when the build fails (with the
# build's output on stderr).
#
# Why the vendor step: FerretDB embeds build/version/version.txt, a file its
# release process generates and the published module does not contain. A
# binary built straight from the module panics at start ("Invalid
# build/version/version.txt file content"); with Go >= 1.24 that holds for a
# `go install ...@v1.24.2` and for a build through a tool dependency alike,
# since both record FerretDB as the binary's main module. So the build
# vendors the go.sum-verified sources into a scratch copy of tool/, adds
# version.txt there (the version pinned in go.mod) and builds -mod=vendor.
# Nothing under the module cache is modified.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
force=0
[ "${1:-}" = "--force" ] && force=1

bin="$here/bin/ferretdb"
stampf="$here/bin/.built-from"
want=$(cd "$here/tool" && sha256sum go.mod go.sum | sha256sum | cut -d' ' -f1)
version=$(awk '$1 == "github.com/FerretDB/FerretDB" { print $2 }' "$here/tool/go.mod")
if [ -z "$version" ]; then
  echo "ferretdb setup: tool/go.mod does not require github.com/FerretDB/FerretDB" >&2
  exit 1
fi
if [ "$force" = 0 ] && [ -x "$bin" ] && [ -f "$stampf" ] \
   && [ "$(cat "$stampf")" = "$want" ]; then
  echo "ferretdb $version up to date: $bin"
  exit 0
fi

# scripts/go.sh prints a go >= 1.26 (FerretDB needs 1.24), downloading the
# project's pinned toolchain when the machine has none; it exits 2 with its
# own message when it cannot. GOTOOLCHAIN=local: never fetch another one;
# GOROOT unset: that go finds its own.
go=$("$here/../go.sh") || exit 2
export GOTOOLCHAIN=local
unset GOROOT

mkdir -p "$here/bin"
work=$(mktemp -d "$here/bin/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log="$work/build.log"
cp "$here/tool/go.mod" "$here/tool/go.sum" "$work/"
# CGO off: the SQLite backend is pure Go (modernc.org/sqlite), like the
# upstream release builds. `go mod vendor` checks every module against the
# committed go.sum (and fails on a missing entry); GOFLAGS from the caller's
# environment are dropped so that they cannot change what is built.
if ! (cd "$work" \
      && GOFLAGS= "$go" mod vendor \
      && printf '%s\n' "$version" >vendor/github.com/FerretDB/FerretDB/build/version/version.txt \
      && printf 'herald-tool\n' >vendor/github.com/FerretDB/FerretDB/build/version/package.txt \
      && CGO_ENABLED=0 GOFLAGS= "$go" build -mod=vendor -buildvcs=false -trimpath \
           -o "$here/bin/ferretdb.tmp" github.com/FerretDB/FerretDB/cmd/ferretdb) \
     >"$log" 2>&1; then
  echo "ferretdb setup: building FerretDB $version failed:" >&2
  tail -40 "$log" >&2
  rm -f "$here/bin/ferretdb.tmp"
  exit 1
fi
# The binary must start and report the pinned version (this is where a
# build without version.txt would panic).
if ! got=$("$here/bin/ferretdb.tmp" --version 2>&1) \
   || ! printf '%s\n' "$got" | grep -qx "version: $version"; then
  echo "ferretdb setup: the built binary does not report version $version:" >&2
  printf '%s\n' "$got" | head -20 >&2
  rm -f "$here/bin/ferretdb.tmp"
  exit 1
fi
mv -f "$here/bin/ferretdb.tmp" "$bin"
echo "$want" >"$stampf"
echo "ferretdb $version built: $bin"

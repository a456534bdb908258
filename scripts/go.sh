#!/usr/bin/env bash
# Prints the path of a Go toolchain recent enough for the project's Go
# builds (FerretDB, scripts/ferretdb/setup.sh, and the Centrifugo peer,
# bench/peers/centrifugo/setup.sh), providing one when the machine has none.
# This is the one place that knows which Go the project needs.
#
#   scripts/go.sh        # prints e.g. /usr/local/go/bin/go on stdout
#
# Order, first suitable wins (go >= GO_MIN):
#   1. `go` on PATH, then /usr/local/go/bin/go;
#   2. the pinned toolchain (GO_VERSION) downloaded earlier into .toolchain/;
#   3. download it: a bootstrap go (any version; Debian 12's golang-go, 1.19,
#      is installed with apt-get when there is none) runs
#      `go mod download golang.org/toolchain@v0.0.1-goGO_VERSION.linux-ARCH`
#      into .toolchain/gopath (ignored by git). That is the module Go's own
#      toolchain switching downloads: the module proxy serves it, and it is
#      verified against the checksum database like every module (GONOSUMDB,
#      GOPRIVATE and GOSUMDB=off are overridden for this download; GOPROXY
#      and the checksum database's name come from the machine's Go settings).
# Idempotent: once the toolchain is there, a run downloads nothing and takes
# a fraction of a second. A download is about 70 MB (about 250 MB unpacked).
# Exits 2 with a message naming what is missing when no Go can be provided.
set -euo pipefail

# The minimum the Go builds need (bench/peers/centrifugo/tool/go.mod says
# go 1.26; FerretDB's says 1.24) and the version downloaded when no go on
# the machine is that recent. Change them here only.
GO_MIN=1.26
GO_VERSION=1.26.8

root=$(cd "$(dirname "$0")/.." && pwd)
tc="$root/.toolchain"
say() { echo "go.sh: $*" >&2; }

# Prints a go binary's version ("go1.26.8" from "go version go1.26.8
# linux/amd64"), or nothing when it does not run. GOTOOLCHAIN=local and
# cd /: a go >= 1.21 must report itself, not a toolchain that some go.mod or
# go env file asks for. GOROOT unset: a go finds its own root (a GOROOT
# left in the environment makes every other go fail), and the setup
# scripts run the printed go without it too.
go_version() {
  (cd / && env -u GOROOT GOTOOLCHAIN=local "$1" version 2>/dev/null) | awk '$3 ~ /^go[0-9]/ { print $3 }'
}
recent_enough() { # go binary
  go_version "$1" | awk -v want="$GO_MIN" '{
    sub(/^go/, ""); split($0, h, /[^0-9]+/); split(want, w, ".")
    exit !(h[1] > w[1] || (h[1] == w[1] && h[2] >= w[2])) } END { if (NR == 0) exit 1 }'
}

# 1. A go the machine already has.
for cand in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go; do
  if [ -n "$cand" ] && [ -x "$cand" ] && recent_enough "$cand"; then
    echo "$cand"
    exit 0
  fi
done

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) say "no Go >= $GO_MIN found, and no toolchain is pinned for $(uname -m): install go >= $GO_MIN in PATH"; exit 2 ;;
esac
module="golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-$arch"
gopath="$tc/gopath"
dir="$gopath/pkg/mod/$module"
stamp="$tc/go$GO_VERSION.linux-$arch.ok"

# 2. The pinned toolchain, downloaded and checked by an earlier run.
if [ -f "$stamp" ] && [ -x "$dir/bin/go" ] \
   && [ "$(go_version "$dir/bin/go")" = "go$GO_VERSION" ]; then
  echo "$dir/bin/go"
  exit 0
fi

# 3. Download it with whatever go there is (any version can download a
# module), installing Debian's golang-go when there is none.
boot=
for cand in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
  if [ -n "$cand" ] && [ -x "$cand" ] && [ -n "$(go_version "$cand")" ]; then boot=$cand; break; fi
done
if [ -z "$boot" ]; then
  say "no Go installed: installing Debian's golang-go to download go $GO_VERSION"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q --no-install-recommends golang-go ca-certificates >&2
  boot=/usr/bin/go
  if [ -z "$(go_version "$boot")" ]; then
    say "installing golang-go did not give a working $boot"
    exit 2
  fi
fi

# The machine's module proxy and checksum database, as the bootstrap go
# reads them (environment and go env file). The download itself runs with
# GOENV=off and only these, so that no GONOSUMDB/GOPRIVATE/GOFLAGS from the
# environment or a go env file can skip the checksum database.
proxy=$(cd / && env -u GOROOT GOTOOLCHAIN=local "$boot" env GOPROXY)
sumdb=$(cd / && env -u GOROOT GOTOOLCHAIN=local "$boot" env GOSUMDB)
case "$proxy" in
  ""|off) say "GOPROXY is '${proxy}': go $GO_VERSION cannot be downloaded (set GOPROXY, e.g. https://proxy.golang.org)"; exit 2 ;;
esac
if [ -z "$sumdb" ] || [ "$sumdb" = off ]; then
  say "GOSUMDB is '${sumdb}': checking the toolchain with sum.golang.org anyway"
  sumdb=sum.golang.org
fi

say "downloading go $GO_VERSION ($module) with $boot ($(go_version "$boot")) through $proxy"
mkdir -p "$tc"
scratch=$(mktemp -d "$tc/.download.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
printf 'module herald.local/toolchain\n\ngo 1.19\n' >"$scratch/go.mod"
# -modcacherw: the unpacked toolchain stays writable, so that the execute
# bits can be set below and `rm -rf .toolchain` works without chmod.
if ! (cd "$scratch" && env -u GONOSUMDB -u GONOSUMCHECK -u GOPRIVATE -u GONOPROXY \
        -u GOINSECURE -u GOROOT \
        GOENV=off GOTOOLCHAIN=local GO111MODULE=on GOFLAGS=-modcacherw \
        GOPROXY="$proxy" GOSUMDB="$sumdb" GOPATH="$gopath" GOMODCACHE="$gopath/pkg/mod" \
        "$boot" mod download -json "$module") >"$scratch/out.json" 2>"$scratch/err.log"; then
  say "downloading $module failed:"
  cat "$scratch/err.log" "$scratch/out.json" >&2
  exit 2
fi
got=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$scratch/out.json")
sum=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p' "$scratch/out.json")
if [ "$got" != "$dir" ] || [ -z "$sum" ]; then
  say "unexpected answer from go mod download (Dir '$got', want '$dir'):"
  cat "$scratch/out.json" >&2
  exit 2
fi
# Module zips do not keep execute bits; Go's own toolchain switch sets them
# on first use the same way (bin/ and pkg/tool/).
find "$dir/bin" "$dir/pkg/tool" -type f -exec chmod a+x {} +
if [ "$(go_version "$dir/bin/go")" != "go$GO_VERSION" ]; then
  say "$dir/bin/go does not report go$GO_VERSION:"
  (cd / && env -u GOROOT GOTOOLCHAIN=local "$dir/bin/go" version) >&2 || true
  exit 2
fi
echo "$module $sum" >"$stamp"
say "go $GO_VERSION ready ($sum)"
echo "$dir/bin/go"

#!/usr/bin/env bash
# Builds the Centrifugo peer (github.com/centrifugal/centrifugo/v6, the
# version pinned in tool/go.mod and tool/go.sum) into bin/centrifugo,
# idempotently: nothing is done when bin/centrifugo was built from the
# current tool/go.sum. Needs Go >= 1.26, which scripts/go.sh provides (a go
# on the machine, or the project's pinned toolchain, downloaded into
# .toolchain/ when missing), and the Go module proxy. A cold build (module
# download + compile) takes about 2.5 minutes on 2 cores; later runs are
# instant.
#
#   setup.sh [--force]
#
# Prints the binary's path on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
force=0
[ "${1:-}" = "--force" ] && force=1

bin="$here/bin/centrifugo"
stampf="$here/bin/.built-from"
want=$(cd "$here/tool" && sha256sum go.mod go.sum | sha256sum | cut -d' ' -f1)
if [ "$force" = 0 ] && [ -x "$bin" ] && [ -f "$stampf" ] \
   && [ "$(cat "$stampf")" = "$want" ]; then
  echo "$bin"
  exit 0
fi

# scripts/go.sh prints a go >= 1.26, downloading the project's pinned
# toolchain when the machine has none; it exits 2 with its own message when
# it cannot. GOROOT unset: that go finds its own.
go=$("$here/../../../scripts/go.sh") || exit 2
unset GOROOT

version=$(awk '$1 == "github.com/centrifugal/centrifugo/v6" { sub(/^v/, "", $2); print $2 }' \
  "$here/tool/go.mod")
mkdir -p "$here/bin"
echo "centrifugo setup: building centrifugo $version (first build takes minutes)" >&2
# GOTOOLCHAIN=local: never fetch another Go toolchain. CGO off like the
# upstream release builds; the version is stamped the way they stamp it.
(cd "$here/tool" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly \
  "$go" build -buildvcs=false -trimpath \
  -ldflags "-X github.com/centrifugal/centrifugo/v6/internal/build.Version=$version" \
  -o "$bin.tmp" github.com/centrifugal/centrifugo/v6)
mv -f "$bin.tmp" "$bin"
echo "$want" >"$stampf"
echo "$bin"

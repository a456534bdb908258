#!/usr/bin/env bash
# Installs the Nchan peer, idempotently: Debian's nginx (nginx-light when
# no nginx flavour is installed yet) and libnginx-mod-nchan. As root, or
# through sudo. The packages' own nginx service is not used: start.sh runs
# a private nginx with its own configuration.
set -euo pipefail
missing=()
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  missing+=(nginx-light)
fi
dpkg-query -W -f='${Status}' libnginx-mod-nchan 2>/dev/null \
  | grep -q "install ok installed" || missing+=(libnginx-mod-nchan)
if [ ${#missing[@]} -gt 0 ]; then
  echo "nchan setup: installing ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

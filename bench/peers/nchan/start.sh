#!/usr/bin/env bash
# Starts the Nchan peer for herald-bench --target nchan: a private nginx
# (its own configuration, pid file and logs in a run dir) with the nchan
# module, listening on loopback.
#
#   start.sh [--listen ADDR:PORT] [--workers N] [--run-dir D]
#
# Defaults: 127.0.0.1:8090, 2 workers, run dir
# ${BENCH_RUN_DIR:-${TMPDIR:-/tmp}/herald-nchan-<port>}. nginx runs as a
# daemon-less master in the background; the run dir receives nginx.conf,
# nginx.pid (the master), error.log. Prints one line:
# "nchan ready listen=ADDR:PORT master_pid=M worker_pids=A,B" (give the
# bench the workers: --server-pid A --server-pid B).
# stop.sh with the same --listen (or --run-dir) stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
listen=${NCHAN_LISTEN:-127.0.0.1:8090}
workers=${NCHAN_WORKERS:-2}
run_dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen=$2; shift 2 ;;
    --port) listen=127.0.0.1:$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    *) echo "start.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
port=${listen##*:}
run_dir=${run_dir:-${BENCH_RUN_DIR:-${TMPDIR:-/tmp}/herald-nchan-$port}}
mkdir -p "$run_dir"

nginx=$(command -v nginx || echo /usr/sbin/nginx)
module=/usr/lib/nginx/modules/ngx_nchan_module.so
if [ ! -x "$nginx" ] || [ ! -f "$module" ]; then
  echo "start.sh: nginx or the nchan module missing; run $here/setup.sh first" >&2
  exit 2
fi
if [ -s "$run_dir/master.pid" ] && kill -0 "$(cat "$run_dir/master.pid")" 2>/dev/null; then
  echo "start.sh: $run_dir: nginx already running (stop.sh first)" >&2
  exit 2
fi
rm -f "$run_dir/nginx.pid" "$run_dir/master.pid"
host=${listen%:*}
host=${host#[}; host=${host%]}
# nginx listens with reuseport: a second server on a port already taken
# would start and share the connections silently.
if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "start.sh: $listen already accepts connections (another server?)" >&2
  exit 2
fi

# Workers of a root master run as root here: the run dir is ours.
user=
[ "$(id -u)" -eq 0 ] && user="user root;"
sed -e "s|@RUN_DIR@|$run_dir|g" -e "s|@LISTEN@|$listen|g" \
    -e "s|@WORKERS@|$workers|g" -e "s|@USER@|$user|g" \
    -e "s|@MODULE@|$module|g" \
    "$here/nginx.conf.in" >"$run_dir/nginx.conf"

fail() {
  echo "start.sh: $*" >&2
  "$here/stop.sh" --run-dir "$run_dir" >/dev/null 2>&1 || true
  exit 1
}

"$nginx" -t -q -p "$run_dir" -c "$run_dir/nginx.conf" -e "$run_dir/error.log" \
  || fail "bad configuration (see above)"
"$nginx" -p "$run_dir" -c "$run_dir/nginx.conf" -e "$run_dir/error.log" \
  </dev/null >>"$run_dir/stdout.log" 2>&1 &
master=$!
echo "$master" >"$run_dir/master.pid"

# Ready when the workers exist and the port accepts (no curl or procps
# needed: the master's children from /proc, a bash /dev/tcp connect).
workers_list=
for _ in $(seq 200); do
  kill -0 "$master" 2>/dev/null || fail "nginx exited (see $run_dir/error.log)"
  workers_list=$(cat /proc/"$master"/task/*/children 2>/dev/null | tr ' ' '\n' \
                 | grep . | paste -sd, || true)
  n=$(echo "$workers_list" | tr ',' '\n' | grep -c . || true)
  if [ "$n" -ge "$workers" ] && (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    break
  fi
  sleep 0.05
done
[ -n "$workers_list" ] || fail "no nginx workers after 10 s (see $run_dir/error.log)"
echo "nchan ready listen=$listen master_pid=$master worker_pids=$workers_list"

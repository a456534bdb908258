#!/usr/bin/env bash
# Stops the nginx that start.sh started (same --listen/--port, or
# --run-dir): SIGQUIT to its master (graceful), SIGTERM after 5 s, SIGKILL
# after 10 s. Idempotent.
set -uo pipefail
listen=${NCHAN_LISTEN:-127.0.0.1:8090}
run_dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen=$2; shift 2 ;;
    --port) listen=127.0.0.1:$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    *) echo "stop.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
port=${listen##*:}
run_dir=${run_dir:-${BENCH_RUN_DIR:-${TMPDIR:-/tmp}/herald-nchan-$port}}

[ -s "$run_dir/master.pid" ] || exit 0
master=$(cat "$run_dir/master.pid")
if kill -0 "$master" 2>/dev/null; then
  kill -QUIT "$master" 2>/dev/null
  for i in $(seq 100); do
    kill -0 "$master" 2>/dev/null || break
    [ "$i" -eq 50 ] && kill -TERM "$master" 2>/dev/null
    sleep 0.1
  done
  if kill -0 "$master" 2>/dev/null; then
    for w in $(cat /proc/"$master"/task/*/children 2>/dev/null); do
      kill -KILL "$w" 2>/dev/null
    done
    kill -KILL "$master" 2>/dev/null
  fi
fi
rm -f "$run_dir/master.pid" "$run_dir/nginx.pid"
exit 0

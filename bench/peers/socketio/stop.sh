#!/usr/bin/env bash
# Stops what start.sh started (same --port, or --run-dir): the node
# processes (primary first: it stops its workers) and the redis-server.
# SIGTERM, then SIGKILL after 5 s. Idempotent.
set -uo pipefail
port=${SIO_PORT:-8092}
run_dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    *) echo "stop.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
run_dir=${run_dir:-${TMPDIR:-/tmp}/herald-socketio-$port}

pids=()
for f in node.pids node.pids.tmp redis.pid; do
  [ -s "$run_dir/$f" ] && while read -r p; do
    [ -n "$p" ] && pids+=("$p")
  done <"$run_dir/$f"
done
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for _ in $(seq 100); do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive -eq 0 ] && break
  sleep 0.05
done
for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
rm -f "$run_dir/node.pids" "$run_dir/node.pids.tmp" "$run_dir/redis.pid"
exit 0

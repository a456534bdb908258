#!/usr/bin/env bash
# Stops the Centrifugo peer started by start.sh: SIGTERM to the pid in the
# run dir's centrifugo.pid, SIGKILL after 5 s, then removes the pid file.
#
#   stop.sh [--port P] [--run-dir D]     (the same as given to start.sh)
set -euo pipefail
port=${CF_PORT:-8094}
run_dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    *) echo "stop.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
run_dir=${run_dir:-${BENCH_RUN_DIR:-${TMPDIR:-/tmp}/herald-centrifugo-$port}}
pidf="$run_dir/centrifugo.pid"
[ -s "$pidf" ] || exit 0
pid=$(cat "$pidf")
# Only a process that runs our binary is ours to stop (a stale pid file may
# name a recycled pid).
if kill -0 "$pid" 2>/dev/null && \
   grep -q centrifugo "/proc/$pid/cmdline" 2>/dev/null; then
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$pidf"

#!/usr/bin/env bash
# What the Prometheus counters cost (docs/metrics.md): the same herald
# binary with `metrics = false` (A) and with metrics on, the default (B),
# in interleaved pairs through bench/ab.sh (ABBA, fresh servers each run,
# every server sampled with --server-pid), so the summary's B/A column is
# metrics on / off in server CPU ns per delivery.
#
#   bench/metrics_ab.sh                         # BUILD=build
#   BUILD=build-dev PAIRS=6 bench/metrics_ab.sh
#
# A is a two-line wrapper that sets HERALD_METRICS=false and execs the
# binary (ab.sh clears HERALD_* for its servers; exec keeps the pid that
# --server-pid samples). Before the runs, both are started once and
# /metrics asked: 404 for A, 200 for B, or the script stops (exit 2).
#
# Environment: BUILD (default build), HERALD (default BUILD/bin/herald),
# STEPS (default "fanout-1k rate-1k rate-10k"), PAIRS (default 6), OUT
# (default bench/results/metrics-ab-YYYYMMDD-HHMMSS), and the rest of
# ab.sh's (DUR, WARMUP, RATE_1K, RATE_10K, THREADS, PORT).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
case $build in /*) ;; *) build=$root/$build ;; esac
bin=${HERALD:-$build/bin/herald}
[ -x "$bin" ] || { echo "metrics_ab: $bin not found (BUILD=dir or HERALD=path)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
off=$tmp/herald-metrics-off
printf '#!/bin/sh\nHERALD_METRICS=false exec "%s" "$@"\n' "$bin" >"$off"
chmod +x "$off"

# The wrapper really turns metrics off, and the binary has them on.
check() {
  local b=$1 want=$2 port=$3 pid status=000 i
  env -u HERALD_METRICS "$b" --listen "127.0.0.1:$port" --workers 1 --log-level warn \
    >"$tmp/check.log" 2>&1 &
  pid=$!
  for i in $(seq 50); do
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics" || true)
    [ "$status" != 000 ] && break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  [ "$status" = "$want" ] ||
    { echo "metrics_ab: $b: /metrics answered $status, expected $want" >&2; exit 2; }
}
port=${PORT:-18500}
check "$off" 404 $((port + 9))
check "$bin" 200 $((port + 9))

export HERALD_A=$off HERALD_B=$bin BUILD=$build
export STEPS=${STEPS:-fanout-1k rate-1k rate-10k} PAIRS=${PAIRS:-6}
export OUT=${OUT:-$root/bench/results/metrics-ab-$(date -u +%Y%m%d-%H%M%S)}
echo "metrics_ab: A = metrics off ($off), B = metrics on ($bin)" >&2
"$root/bench/ab.sh"

#!/usr/bin/env bash
# What the Prometheus counters cost (docs/metrics.md): the same herald
# binary with `metrics = false` (A) and with metrics on, the default (B).
#
# 1. Server CPU ns per delivery, interleaved: bench/ab.sh (ABBA pairs,
#    fresh servers each run, every server sampled with --server-pid), so
#    its summary's B/A column is metrics on / off. A is a two-line wrapper
#    that sets HERALD_METRICS=false and execs the binary (ab.sh clears
#    HERALD_* for its servers; exec keeps the pid --server-pid samples).
# 2. Instructions per delivery under callgrind, which the machine's load
#    does not move: bench/instr.sh with ENV_A=HERALD_METRICS=false, and
#    from B's profiles the instructions spent in server/metrics/ code
#    (the hooks are inline functions of metrics.h: callgrind attributes
#    them to that file) per delivery, steady state (long run - short run).
#
#   bench/metrics_ab.sh                         # BUILD=build
#   BUILD=build-dev PAIRS=6 bench/metrics_ab.sh
#   AB=0 bench/metrics_ab.sh                    # only the callgrind part
#
# Before the runs, both are started once and /metrics asked: 404 for A,
# 200 for B, or the script stops (exit 2).
#
# Environment: BUILD (default build), HERALD (default BUILD/bin/herald),
# AB (1: run part 1), INSTR (1: run part 2; needs valgrind), STEPS
# (default "fanout-1k rate-1k rate-10k"), PAIRS (default 6), OUT (default
# bench/results/metrics-ab-YYYYMMDD-HHMMSS; part 2 in OUT/instr), and the
# rest of ab.sh's and instr.sh's (DUR, WARMUP, RATE_1K, RATE_10K, THREADS,
# RUNS, SUBS, RATE, PORT).
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

out=${OUT:-$root/bench/results/metrics-ab-$(date -u +%Y%m%d-%H%M%S)}
status=0
if [ "${AB:-1}" = 1 ]; then
  echo "metrics_ab: A = metrics off ($off), B = metrics on ($bin)" >&2
  HERALD_A=$off HERALD_B=$bin BUILD=$build OUT=$out \
    STEPS=${STEPS:-fanout-1k rate-1k rate-10k} PAIRS=${PAIRS:-6} \
    "$root/bench/ab.sh" || status=1
fi
if [ "${INSTR:-1}" = 1 ]; then
  ENV_A=HERALD_METRICS=false HERALD_A=$bin HERALD_B=$bin BUILD=$build \
    OUT=$out/instr PORT=$((port + 20)) "$root/bench/instr.sh" || status=1
  # Instructions in server/metrics/ code per delivery, B's profiles.
  for cg in "$out"/instr/B-*.cg; do
    printf '%s ' "$cg"
    callgrind_annotate --show-percs=no "$cg" 2>/dev/null |
      awk '/server\/metrics\//{gsub(",","",$1); s+=$1} END{print s+0}'
  done >"$out/instr/metrics_ir.txt"
  /usr/bin/python3 - "$out/instr" <<'PY' | tee -a "$out/instr/summary.md"
import json, os, re, statistics, sys
d = sys.argv[1]
ir = {}
for line in open(os.path.join(d, "metrics_ir.txt")):
    path, n = line.split()
    ir[os.path.basename(path)[:-3]] = int(n)      # B-DUR-K
runs = sorted({k.split("-")[2] for k in ir})
durs = sorted({int(k.split("-")[1]) for k in ir})
short, long_ = str(durs[0]), str(durs[-1])
per = []
for k in runs:
    s, l = "B-%s-%s" % (short, k), "B-%s-%s" % (long_, k)
    ds = json.load(open(os.path.join(d, s + ".json")))["deliveries_total"]
    dl = json.load(open(os.path.join(d, l + ".json")))["deliveries_total"]
    per.append((ir[l] - ir[s]) / (dl - ds))
print("\ninstructions in server/metrics/ code per delivery (B, metrics on): %s; median **%.1f**"
      % (" ".join("%.1f" % v for v in per), statistics.median(per)))
PY
fi
exit "$status"

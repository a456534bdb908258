#!/usr/bin/env bash
# 100,000 idle connections on this machine: a process may hold at most
# 20,000 descriptors here, so N herald processes (single nodes side by
# side, ports 8081...) each take COUNT/N connections from their own
# herald-bench connections run, all ramping at once; bench/sum_connections.py
# adds the reports up (connections, failures, connect rate over the common
# ramp, server RSS and PSS per connection over every herald process).
#
#   bench/connections-100k.sh            # 100,000 over 6 processes
#   COUNT=30000 PROCS=2 bench/connections-100k.sh
#
# Environment: BUILD (default build), OUT (default bench/results/conns100k),
# COUNT (100000), PROCS (6), RATE (total connects/s asked for, 30000),
# HOLD (seconds held, 10), WORKERS (per herald process, 1).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
out=${OUT:-$root/bench/results/conns100k}
count=${COUNT:-100000}
procs=${PROCS:-6}
rate=${RATE:-30000}
hold=${HOLD:-10}
workers=${WORKERS:-1}
mkdir -p "$out"
rm -f "$out"/*.json
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT INT TERM

per=$(( (count + procs - 1) / procs ))
for i in $(seq 1 "$procs"); do
  "$build/bin/herald" --workers "$workers" --listen 127.0.0.1:$((8080 + i)) \
    --log-level warn >"$out/herald.$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq 1 "$procs"); do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$((8080 + i))/healthz" >/dev/null && break
    sleep 0.05
  done
done

benches=()
for i in $(seq 1 "$procs"); do
  # 1,000 connections per source address: the bench processes share the
  # addresses 127.0.0.1, .2, ... (each bound port is unique per address,
  # 6,000 per address of the ~28,000 ephemeral ports at 100,000).
  "$build/bin/herald-bench" connections --url "ws://127.0.0.1:$((8080 + i))/ws" \
    --count "$per" --rate $((rate / procs)) --duration "$hold" --warmup 0 \
    --conns-per-addr 1000 \
    --server-pid "${pids[$((i - 1))]}" --quiet --json "$out/conns.$i.json" \
    >"$out/bench.$i.txt" 2>&1 &
  benches+=($!)
done
status=0
for b in "${benches[@]}"; do wait "$b" || status=1; done
/usr/bin/python3 "$root/bench/sum_connections.py" "$out"/conns.*.json \
  >"$out/summary.json" || status=1
cat "$out/summary.json"
exit $status

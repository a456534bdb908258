#!/usr/bin/env bash
# Herald and Nchan side by side in one run: the same herald-bench fanout
# (1 channel x 1,000 and x 10,000 subscribers, 100-byte payloads, closed
# loop, 2 bench threads, 10 s measured after 2 s warm-up) against a fresh
# server of each for every step, with --server-pid (herald's pid; nginx's
# two workers), so that deliveries/s and server ns per delivery compare.
#
#   compare.sh [BUILD_DIR]      (default: build; needs bin/herald and
#                                bin/herald-bench with --target nchan)
#
# Environment: NCHAN_OUT (results dir, default /tmp/herald-nchan-compare),
# NCHAN_DUR (measured seconds, 10), NCHAN_SUBS ("1000 10000"), HERALD_PORT
# (18091), NCHAN_PORT (8091). Prints one summary line per step (server
# figures summed over the peer's processes); the JSON reports and the
# bench output go to NCHAN_OUT.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../../build}
out=${NCHAN_OUT:-/tmp/herald-nchan-compare}
dur=${NCHAN_DUR:-10}
subs_list=${NCHAN_SUBS:-1000 10000}
hport=${HERALD_PORT:-18091}
nport=${NCHAN_PORT:-8091}
bench="$build/bin/herald-bench"
herald="$build/bin/herald"
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$here/setup.sh" >/dev/null || exit 2
for b in "$bench" "$herald"; do
  [ -x "$b" ] || { echo "compare.sh: $b not built" >&2; exit 2; }
done

srv=
stop_all() {
  if [ -n "$srv" ] && kill -0 "$srv" 2>/dev/null; then
    kill -TERM "$srv"; wait "$srv" 2>/dev/null
  fi
  srv=
  "$here/stop.sh" --run-dir "$out/nchan-run" || true
}
trap stop_all EXIT

summary() {
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ss = r["servers"]
cpu = sum(s["cpu_util"] for s in ss)
ns = sum(s["ns_per_delivery"] or 0 for s in ss)
rss = sum(s["rss_bytes"] for s in ss)
print(f'{r.get("target", "herald"):8s} subs={r["subscribers"]:<6d} '
      f'deliveries/s={r["deliveries_per_s"]:.0f} '
      f'server_cpu={cpu:.2f} ns/delivery={ns:.0f} ({len(ss)} process(es)) '
      f'bench_cpu={r["bench"]["cpu_util"]:.2f} p50_us={r["latency"]["p50_us"]:.0f} '
      f'p99_us={r["latency"]["p99_us"]:.0f} gaps={r["gaps"]} dups={r["duplicates"]} '
      f'rss_mib={rss / 1048576:.0f}')
PY
}

common=(--channels 1 --size 100 --duration "$dur" --warmup 2 --threads 2 --quiet)
rc=0
for n in $subs_list; do
  echo "loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  "$herald" --workers 2 --listen "127.0.0.1:$hport" --log-level error \
    >"$out/herald-$n.log" 2>&1 &
  srv=$!
  sleep 0.5
  "$bench" fanout --url "ws://127.0.0.1:$hport/ws" --subs "$n" "${common[@]}" \
    --server-pid "$srv" --json "$out/herald-$n.json" >"$out/herald-$n.out" 2>&1 || rc=1
  stop_all
  summary "$out/herald-$n.json" || rc=1

  line=$("$here/start.sh" --listen "127.0.0.1:$nport" --run-dir "$out/nchan-run") || exit 1
  pids=()
  for w in $(echo "${line##*worker_pids=}" | tr ',' ' '); do
    pids+=(--server-pid "$w")
  done
  "$bench" fanout --target nchan --url "ws://127.0.0.1:$nport" --subs "$n" \
    "${common[@]}" "${pids[@]}" --json "$out/nchan-$n.json" \
    >"$out/nchan-$n.out" 2>&1 || rc=1
  stop_all
  summary "$out/nchan-$n.json" || rc=1
done
exit $rc

#!/usr/bin/env bash
# Herald and Centrifugo side by side in one run: the same herald-bench
# fanout (1 channel x 1,000 and x 10,000 subscribers, 100-byte payloads,
# closed loop) against a fresh server of each for every step, with
# --server-pid, so that deliveries/s and server ns per delivery compare.
#
#   compare.sh [BUILD_DIR]      (default: build; needs bin/herald and
#                                bin/herald-bench with --target centrifugo)
#
# Environment: CF_OUT (results dir, default /tmp/herald-cf-compare),
# CF_DUR (measured seconds, 10), CF_SUBS ("1000 10000"), HERALD_PORT
# (18095), CF_PORT (18094). Prints one summary line per step; the JSON
# reports and the bench output go to CF_OUT.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../../build}
out=${CF_OUT:-/tmp/herald-cf-compare}
dur=${CF_DUR:-10}
subs_list=${CF_SUBS:-1000 10000}
hport=${HERALD_PORT:-18095}
cport=${CF_PORT:-18094}
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
  "$here/stop.sh" --port "$cport" --run-dir "$out/cf-run" || true
}
trap stop_all EXIT

summary() {
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["servers"][0]
print(f'{r.get("target", "herald"):10s} subs={r["subscribers"]:<6d} '
      f'deliveries/s={r["deliveries_per_s"]:.0f} '
      f'server_cpu={s["cpu_util"]:.2f} ns/delivery={s["ns_per_delivery"]:.0f} '
      f'bench_cpu={r["bench"]["cpu_util"]:.2f} p50_us={r["latency"]["p50_us"]} '
      f'p99_us={r["latency"]["p99_us"]} gaps={r["gaps"]} dups={r["duplicates"]} '
      f'rss_mib={s["rss_bytes"] / 1048576:.0f}')
PY
}

common=(--channels 1 --size 100 --duration "$dur" --warmup 2 --threads 2 --quiet)
rc=0
for n in $subs_list; do
  # Herald: 2 workers, like GOMAXPROCS=2 for Centrifugo.
  "$herald" --workers 2 --listen "127.0.0.1:$hport" --log-level error \
    >"$out/herald-$n.log" 2>&1 &
  srv=$!
  sleep 0.5
  "$bench" fanout --url "ws://127.0.0.1:$hport/ws" --subs "$n" "${common[@]}" \
    --server-pid "$srv" --json "$out/herald-$n.json" >"$out/herald-$n.out" 2>&1 || rc=1
  stop_all
  summary "$out/herald-$n.json" || rc=1

  line=$("$here/start.sh" --port "$cport" --run-dir "$out/cf-run") || exit 1
  cpid=${line##*pid=}
  "$bench" fanout --target centrifugo --url "ws://127.0.0.1:$cport" --subs "$n" \
    "${common[@]}" --server-pid "$cpid" --json "$out/centrifugo-$n.json" \
    >"$out/centrifugo-$n.out" 2>&1 || rc=1
  stop_all
  summary "$out/centrifugo-$n.json" || rc=1
done
exit $rc

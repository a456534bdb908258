#!/usr/bin/env bash
# Fan-out across a Herald cluster, and the single node beside it in the same
# run. The cluster is a redis-server (its own temporary directory, no
# persistence) and two herald nodes (--workers 1 each, --redis); herald-bench
# gets both nodes' URLs and spreads the subscribers over them round-robin,
# with the publisher on the first node, so half the deliveries cross Redis.
# The single node is one herald --workers 2 without Redis (the same two
# cores' worth of workers). Each step gets fresh servers, and every server
# process (both nodes and redis) is sampled with --server-pid.
#
#   bench/cluster.sh                       # the four steps, about 2 minutes
#   STEPS="cluster-fanout single-fanout" DUR=5 bench/cluster.sh
#
# Steps: cluster-fanout, single-fanout: `herald-bench fanout --channels 1
# --subs SUBS --size 100 --threads 2` as fast as acknowledged (window 16);
# cluster-rate, single-rate: the same at --rate RATE publications/s (latency
# below saturation). Reports: OUT/<step>.json (herald-bench's report plus a
# `suite` object: step, server commands, exit status, load, git revision),
# the bench's output in OUT/logs/; a summary table at the end (also in
# OUT/summary.txt).
#
# Environment: BUILD (build directory, default build), HERALD (the server
# binary, default BUILD/bin/herald), BENCH (default BUILD/bin/herald-bench),
# OUT (default bench/results/cluster), STEPS, DUR (measured seconds, 10),
# WARMUP (2), SUBS (10000), RATE (20: 200,000 deliveries/s at 10,000
# subscribers, as in bench/compare.sh), THREADS (bench threads, 2),
# PORT (first port, 18300: redis PORT, nodes PORT+1 and PORT+2, the single
# node PORT+3), REDIS_SERVER (default /usr/bin/redis-server).
# Exit status: 0 when every step exited 0 and every report is complete (no
# gap, no duplicate, every publication delivered to every subscriber), 1
# otherwise, 2 set-up errors.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
herald=${HERALD:-$build/bin/herald}
bench=${BENCH:-$build/bin/herald-bench}
out=${OUT:-$root/bench/results/cluster}
# Cluster and single node alternate, so that both see the machine in about
# the same state.
steps=${STEPS:-cluster-fanout single-fanout cluster-rate single-rate}
steps=${steps//,/ }
dur=${DUR:-10}
warm=${WARMUP:-2}
subs=${SUBS:-10000}
rate=${RATE:-20}
threads=${THREADS:-2}
port0=${PORT:-18300}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
py=/usr/bin/python3
bench_name=cluster
. "$root/bench/lib.sh"
setup_timeout=60

for b in "$herald" "$bench" "$REDIS_SERVER"; do
  [ -x "$b" ] || { echo "cluster: $b not found (BUILD=dir, HERALD=path)" >&2; exit 2; }
done
help=$("$herald" --help 2>&1)
if ! grep -q -- --redis <<<"$help"; then
  case " $steps " in
    *" cluster-"*) echo "cluster: $herald has no --redis (cluster mode)" >&2; exit 2 ;;
  esac
fi
# Stops what this script starts, keeps HERALD_* from the servers (lib.sh).
run_prepare cluster

# start_mode MODE STEP: the servers of MODE (cluster | single); sets URLS
# (--url arguments), PIDS (--server-pid arguments), ROLES (what each of
# those pids is) and SERVER_CMDS.
start_mode() {
  local mode=$1 step=$2 redis_url
  URLS=(); PIDS=(); ROLES=(); SERVER_CMDS=()
  case $mode in
    cluster)
      start_redis "$port0" "$out/logs/$step.redis.log" "$run/redis" || return 1
      redis_url="redis://127.0.0.1:$port0"
      for n in 1 2; do
        start_herald "$herald" $((port0 + n)) "$out/logs/$step.herald$n.log" \
          --workers 1 --redis "$redis_url" || return 1
        URLS+=(--url "ws://127.0.0.1:$((port0 + n))/ws")
      done
      SERVER_CMDS+=("$REDIS_CMD")   # in the order of PIDS and ROLES
      for p in "${HERALDS[@]}" "$REDIS"; do PIDS+=(--server-pid "$p"); done
      ROLES=("node 1" "node 2" redis) ;;
    single)
      start_herald "$herald" $((port0 + 3)) "$out/logs/$step.herald.log" --workers 2 || return 1
      URLS=(--url "ws://127.0.0.1:$((port0 + 3))/ws")
      PIDS=(--server-pid "${HERALDS[0]}")
      ROLES=(herald) ;;
  esac
}

rev=$(source_rev "$root")
failed=0
echo "cluster: steps: $steps (herald $herald, results in $out)" >&2
for step in $steps; do
  case $step in
    cluster-fanout|single-fanout) extra=() ;;
    cluster-rate|single-rate) extra=(--rate "$rate") ;;
    *) echo "cluster: unknown step $step" >&2; failed=1; continue ;;
  esac
  mode=${step%%-*}
  json="$out/$step.json"; log="$out/logs/$step"
  rm -f "$json"
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(date +%s.%N)
  if ! start_mode "$mode" "$step"; then
    failed=1; stop_servers; continue
  fi
  cmd=("$bench" fanout --channels 1 --subs "$subs" --size 100 --threads "$threads"
       "${extra[@]}" "${URLS[@]}" --duration "$dur" --warmup "$warm"
       --setup-timeout "$setup_timeout" "${PIDS[@]}" --json "$json")
  echo "cluster: [$step] ${cmd[*]}" >&2
  limit=$((2 * setup_timeout + ${warm%.*} + ${dur%.*} + 40))
  timeout --kill-after=10 "$limit" "${cmd[@]}" >"$log.out" 2>"$log.err" &
  BENCH_PID=$!
  wait "$BENCH_PID"; status=$?
  BENCH_PID=
  stop_servers
  wall=$("$py" -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")
  roles=$(IFS=,; echo "${ROLES[*]}")
  annotate_report "$json" "$step" "$wall" "$status" "$load" "$rev" "$roles" -- "${SERVER_CMDS[@]}"
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "cluster: [$step] exit $status; tail of $log.err:" >&2
    tail -n 5 "$log.err" >&2
  fi
  printf 'cluster: [%s] exit %d in %.0f s\n' "$step" "$status" "$wall" >&2
  sleep 1
done

# The summary: per step, throughput, latency, server CPU per delivery summed
# over every server process (nodes and redis), and for the cluster the
# latency of each node's subscribers (node 1 has the publisher; node 2's
# deliveries crossed Redis). Exit 1 when a report is missing, or has gaps,
# duplicates or publications that did not reach every subscriber.
"$py" - "$out" $steps <<'EOF' | tee "$out/summary.txt"
import json, os, sys
out, steps = sys.argv[1], sys.argv[2:]
bad = 0
def ms(us):
    return "%.1f ms" % (us / 1000) if us >= 1000 else "%.0f us" % us
print("%-15s %12s %9s %9s %13s %10s %6s %10s %s" % (
    "step", "deliveries/s", "p50", "p99", "srv ns/deliv", "srv cores", "bench",
    "gaps/dups", "all delivered"))
for step in steps:
    try:
        r = json.load(open(os.path.join(out, step + ".json")))
    except (OSError, ValueError):
        print("%-15s (no report)" % step)
        bad = 1
        continue
    srv = [s for s in r.get("servers", []) if s.get("ok")]
    ns = sum(s.get("ns_per_delivery") or 0 for s in srv)
    cores = sum(s.get("cpu_util", 0) for s in srv)
    lat = r["latency"]
    missing = r["expected_deliveries"] - r["deliveries_total"]
    bad |= bool(missing or r["gaps"] or r["duplicates"])
    print("%-15s %12.0f %9s %9s %13.0f %10.2f %6.2f %10s %s%s" % (
        step, r["deliveries_per_s"], ms(lat["p50_us"]), ms(lat["p99_us"]), ns, cores,
        r["bench"]["cpu_util"], "%d/%d" % (r["gaps"], r["duplicates"]),
        "yes" if missing == 0 else "NO (%d missing)" % missing,
        "" if r.get("suite", {}).get("exit_status", 0) == 0 else
        "  (exit %d)" % r["suite"]["exit_status"]))
    roles = r.get("suite", {}).get("server_roles", [])
    if len(r.get("servers", [])) > 1:
        print("%-15s   server ns/delivery (cores): %s" % ("", ", ".join(
            "%s %.0f (%.2f)" % (roles[i] if i < len(roles) else s["pid"],
                                s.get("ns_per_delivery") or 0, s.get("cpu_util", 0))
            for i, s in enumerate(r["servers"]) if s.get("ok"))))
    for i, u in enumerate(r.get("per_url", [])):
        print("%-15s   node %d (%s, %d subs, %d pubs): %.0f deliveries/s, p50 %s, p99 %s" % (
            "", i + 1, u["url"], u["subscribers"], u["publishers"], u["deliveries_per_s"],
            ms(u["latency"]["p50_us"]), ms(u["latency"]["p99_us"])))
sys.exit(bad)
EOF
[ "${PIPESTATUS[0]}" = 0 ] || failed=1
exit "$failed"

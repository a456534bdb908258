#!/usr/bin/env bash
# A/B of two herald binaries in one run, for accepting a refactor of the
# server: the same fan-out steps against binary A and binary B in
# interleaved pairs (pair 1: each step on A then on B; pair 2: on B then on
# A; ...: ABBA),
# each run with fresh server processes, every server process sampled with
# --server-pid. The machine's load drifts over a run; a pair's A and B
# sit next to each other, and the medians over the pairs are compared.
#
#   bench/ab.sh                                    # A = B = build/bin/herald
#   HERALD_A=/tmp/old/herald HERALD_B=build/bin/herald bench/ab.sh
#   DUR=2 PAIRS=1 bench/ab.sh                      # a smoke run, about 2 minutes
#
# Steps (herald-bench fanout, 1 channel, 100-byte payloads, --threads 2):
#   fanout-1k    1 x 1,000 subscribers, closed loop (window 16)
#   fanout-10k   1 x 10,000, closed loop
#   rate-1k      1 x 1,000 at RATE_1K publications/s (100: 100,000 deliveries/s)
#   rate-10k     1 x 10,000 at RATE_10K publications/s (20: 200,000 deliveries/s)
#   cluster-10k  1 x 10,000 closed loop across two `--workers 1` nodes on one
#                redis-server (as bench/cluster.sh: subscribers spread over
#                both nodes, the publisher on the first, so half of the
#                deliveries cross Redis); servers sampled: both nodes, redis
# The single-node steps run `herald --workers 2`.
#
# Output: OUT/NN-<step>-<A|B>.json (herald-bench's report plus `suite`:
# step, label, pair, binary, server commands and roles, exit status, load,
# revision), the bench's and servers' output in OUT/logs/, and the summary
# table (printed, and in OUT/summary.md): per step and binary the medians
# over the pairs of server CPU ns per delivery (summed over the step's
# server processes), deliveries/s and p99, the B/A ratio of the median ns
# per delivery (with the range of the pairs' own ratios), and gaps,
# duplicates and undelivered publications (all must be 0).
#
# Environment: HERALD_A, HERALD_B (default BUILD/bin/herald), BUILD
# (default build), BENCH (default BUILD/bin/herald-bench), OUT (default
# bench/results/ab-YYYYMMDD-HHMMSS, UTC; ignored by git), PAIRS (4), STEPS
# (all five, in the order above), DUR (measured seconds, 10), WARMUP (2),
# RATE_1K (100), RATE_10K (20), THREADS (bench threads, 2), PORT (first
# port, 18500: redis PORT, cluster nodes PORT+1 and PORT+2, the single
# node PORT+3), REDIS_SERVER (default /usr/bin/redis-server).
# Exit status: 0 when every run exited 0 and every report is complete (no
# gap, no duplicate, every publication delivered to every subscriber), 1
# otherwise, 2 set-up errors.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/bench/results/ab-$(date -u +%Y%m%d-%H%M%S)}
pairs=${PAIRS:-4}
steps=${STEPS:-fanout-1k fanout-10k rate-1k rate-10k cluster-10k}
steps=${steps//,/ }
dur=${DUR:-10}
warm=${WARMUP:-2}
rate_1k=${RATE_1K:-100}
rate_10k=${RATE_10K:-20}
threads=${THREADS:-2}
port0=${PORT:-18500}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
py=/usr/bin/python3
bench_name=ab
. "$root/bench/lib.sh"
ab_binaries   # build, herald_a, herald_b, bench
setup_timeout=60

case $pairs in ''|*[!0-9]*|0) echo "ab: PAIRS must be a positive number" >&2; exit 2 ;; esac
for b in "$herald_a" "$herald_b" "$bench"; do
  [ -x "$b" ] || { echo "ab: $b not found (BUILD=dir, HERALD_A/HERALD_B=path)" >&2; exit 2; }
done
for step in $steps; do
  case $step in
    fanout-1k|fanout-10k|rate-1k|rate-10k) ;;
    cluster-10k)
      [ -x "$REDIS_SERVER" ] || { echo "ab: $REDIS_SERVER not found" >&2; exit 2; }
      for b in "$herald_a" "$herald_b"; do
        "$b" --help 2>&1 | grep -q -- --redis ||
          { echo "ab: $b has no --redis (cluster mode)" >&2; exit 2; }
      done ;;
    *) echo "ab: unknown step $step" >&2; exit 2 ;;
  esac
done
# HERALD_A and HERALD_B were read above: run_prepare keeps every HERALD_*
# from the servers, and stops what this script starts (lib.sh).
run_prepare ab

# start_step STEP BIN PREFIX: the servers of STEP running BIN; sets URLS
# (--url arguments), PIDS (--server-pid arguments), ROLES and SERVER_CMDS,
# in the same order.
start_step() {
  local step=$1 bin=$2 prefix=$3 node p
  URLS=(); PIDS=(); ROLES=(); SERVER_CMDS=()
  case $step in
    cluster-*)
      start_redis "$port0" "$out/logs/$prefix.redis.log" "$run/redis" || return 1
      for node in 1 2; do
        start_herald "$bin" $((port0 + node)) "$out/logs/$prefix.herald$node.log" \
          --workers 1 --redis "redis://127.0.0.1:$port0" || return 1
        URLS+=(--url "ws://127.0.0.1:$((port0 + node))/ws")
      done
      SERVER_CMDS+=("$REDIS_CMD")
      for p in "${HERALDS[@]}" "$REDIS"; do PIDS+=(--server-pid "$p"); done
      ROLES=("node 1" "node 2" redis) ;;
    *)
      start_herald "$bin" $((port0 + 3)) "$out/logs/$prefix.herald.log" --workers 2 || return 1
      URLS=(--url "ws://127.0.0.1:$((port0 + 3))/ws")
      PIDS=(--server-pid "${HERALDS[0]}")
      ROLES=(herald) ;;
  esac
}

# The herald-bench arguments of a step (without URLs, pids, durations).
step_args() {
  case $1 in
    fanout-1k)   echo "fanout --channels 1 --subs 1000 --size 100 --threads $threads" ;;
    fanout-10k)  echo "fanout --channels 1 --subs 10000 --size 100 --threads $threads" ;;
    rate-1k)     echo "fanout --channels 1 --subs 1000 --size 100 --threads $threads --rate $rate_1k" ;;
    rate-10k)    echo "fanout --channels 1 --subs 10000 --size 100 --threads $threads --rate $rate_10k" ;;
    cluster-10k) echo "fanout --channels 1 --subs 10000 --size 100 --threads $threads" ;;
  esac
}

rev=$(source_rev "$root")
# The binaries as they are now (a rebuild during the run would otherwise be
# reported as what was measured).
sha_a=$(sha256sum "$herald_a" | cut -c1-12)
sha_b=$(sha256sum "$herald_b" | cut -c1-12)
failed=0; run_no=0
echo "ab: A = $herald_a, B = $herald_b; $pairs pair(s) of: $steps; results in $out" >&2
for pair in $(seq "$pairs"); do
  for step in $steps; do
    # ABBA: odd pairs run A first, even pairs B first, so what the order
    # costs (a cold first run, the machine's drift) falls on both.
    if [ $((pair % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
    for label in $order; do
      if [ "$label" = A ]; then bin=$herald_a; else bin=$herald_b; fi
      run_no=$((run_no + 1))
      prefix=$(printf '%02d-%s-%s' "$run_no" "$step" "$label")
      json="$out/$prefix.json"; log="$out/logs/$prefix"
      rm -f "$json"   # a reused OUT must not lend an old report
      load=$(cut -d' ' -f1-3 /proc/loadavg)
      t0=$(date +%s.%N)
      if ! start_step "$step" "$bin" "$prefix"; then
        failed=1; stop_servers; continue
      fi
      # shellcheck disable=SC2207 # step_args is a word list on purpose
      cmd=("$bench" $(step_args "$step") "${URLS[@]}" --duration "$dur"
           --warmup "$warm" --setup-timeout "$setup_timeout" "${PIDS[@]}"
           --quiet --json "$json")
      echo "ab: [$prefix] ${cmd[*]}" >&2
      limit=$((2 * setup_timeout + ${warm%.*} + ${dur%.*} + 40))
      timeout --kill-after=10 "$limit" "${cmd[@]}" >"$log.out" 2>"$log.err" &
      BENCH_PID=$!
      wait "$BENCH_PID"; status=$?
      BENCH_PID=
      stop_servers
      wall=$("$py" -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")
      roles=$(IFS=,; echo "${ROLES[*]}")
      annotate_report "$json" "$step" "$wall" "$status" "$load" "$rev" "$roles" \
        "label=$label" "pair=$pair" "binary=$bin" -- "${SERVER_CMDS[@]}"
      if [ "$status" -ne 0 ]; then
        failed=1
        echo "ab: [$prefix] exit $status; tail of $log.err:" >&2
        tail -n 5 "$log.err" >&2
      fi
      sleep 1
    done
  done
done

# The summary: per step and binary, medians over the pairs; B/A of the
# median server ns per delivery, and the range of the pairs' own ratios.
"$py" - "$out" "$herald_a" "$herald_b" "$sha_a" "$sha_b" "$pairs" "$dur" "$warm" "$rev" $steps <<'EOF' | tee "$out/summary.md"
import glob, json, os, statistics, sys
out, bin_a, bin_b, sha_a, sha_b, pairs, dur, warm, rev = sys.argv[1:10]
steps = sys.argv[10:]

def usable(r):
    """A run that exited 0 and whose every server was sampled: the only
    ones that enter the statistics (the others are counted as failed)."""
    servers = r.get("servers", [])
    return (r.get("suite", {}).get("exit_status", 1) == 0 and servers and
            all(x.get("ok") and x.get("ns_per_delivery") for x in servers))

runs = {}   # (step, label) -> {pair: report}
bad = 0
for path in glob.glob(os.path.join(out, "[0-9]*-*.json")):
    try:
        r = json.load(open(path))
    except (OSError, ValueError):
        continue
    s = r.get("suite", {})
    runs.setdefault((s.get("step"), s.get("label")), {})[str(s.get("pair"))] = r

def ns(r):
    return sum(x["ns_per_delivery"] for x in r["servers"])

def med(v):
    return statistics.median(v) if v else float("nan")

print("# herald A/B: %s pair(s), %s s measured after %s s warm-up\n" % (pairs, dur, warm))
print("- A: %s (sha256 %s)" % (bin_a, sha_a))
print("- B: %s (sha256 %s)" % (bin_b, sha_b))
print("- bench/ab.sh at %s; reports in %s\n" % (rev, out))
print("| step | A ns/delivery | B ns/delivery | B/A ns/delivery (pairs) | A deliveries/s | B deliveries/s | A p99 | B p99 | gaps/dups/undelivered A, B |")
print("|---|---|---|---|---|---|---|---|---|")
for step in steps:
    all_a, all_b = runs.get((step, "A"), {}), runs.get((step, "B"), {})
    ra = {p: r for p, r in all_a.items() if usable(r)}
    rb = {p: r for p, r in all_b.items() if usable(r)}
    row = [step]
    for rs in (ra, rb):
        row.append("%.0f" % med([ns(r) for r in rs.values()]) if rs else "(none)")
    if ra and rb:
        ratio = med([ns(r) for r in rb.values()]) / med([ns(r) for r in ra.values()])
        # Each pair's own ratio: B and A of the same pair only.
        pr = [ns(rb[p]) / ns(ra[p]) for p in ra if p in rb]
        row.append("**%.2fx** (%.2f-%.2f)" % (ratio, min(pr), max(pr)) if pr else "%.2fx" % ratio)
    else:
        row.append("-")
    for rs in (ra, rb):
        row.append("%.0f" % med([r["deliveries_per_s"] for r in rs.values()]) if rs else "-")
    for rs in (ra, rb):
        row.append("%.1f ms" % (med([r["latency"]["p99_us"] for r in rs.values()]) / 1e3)
                   if rs else "-")
    checks = []
    for rs, every in ((ra, all_a), (rb, all_b)):
        g = sum(r["gaps"] for r in every.values())
        d = sum(r["duplicates"] for r in every.values())
        u = sum(max(0, r["expected_deliveries"] - r["deliveries_total"]) for r in every.values())
        failed = len(every) - len(rs)
        missing = int(pairs) - len(every)
        bad |= bool(g or d or u or failed or missing)
        checks.append("%d/%d/%d%s%s" % (g, d, u, " (%d failed)" % failed if failed else "",
                                        " (%d missing)" % missing if missing else ""))
    row.append(", ".join(checks))
    print("| " + " | ".join(row) + " |")
print("\nns/delivery: server CPU ns per delivery (herald-bench --server-pid), summed over the"
      " step's server processes (cluster-10k: both nodes and redis); medians over the pairs."
      " B/A below 1: B spends less CPU per delivery. Only runs that exited 0 with every"
      " server sampled count; the others are reported as failed.")
sys.exit(bad)
EOF
[ "${PIPESTATUS[0]}" = 0 ] || failed=1
exit "$failed"

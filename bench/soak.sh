#!/usr/bin/env bash
# Soak (issue 11): a two-node Herald cluster with durable history under
# connection churn for DURATION seconds (10 minutes by default), with a
# Redis crash and restart and a MongoDB (FerretDB) pause on the way; every
# server's RSS sampled each second. Not part of CI: `make test` runs the
# churn scenario itself for a few seconds (tests/integration/
# test_bench_smoke.py, test_churn*: one node, and two cluster nodes), not
# this script.
#
#   make build && scripts/ferretdb/setup.sh && bench/soak.sh     # ~12 minutes
#   DURATION=120 WARMUP=20 bench/soak.sh                          # a shorter run
#
# The servers (fresh, in a temporary directory, stopped on exit):
#   - redis-server on PORT with an append-only file (appendfsync always),
#     so that a crash loses nothing and the nodes must repair, not reset;
#   - FerretDB on PORT+1 (scripts/ferretdb/start.sh; FERRETDB_SCRIPTS);
#   - two herald nodes on PORT+2 and PORT+3 (--workers WORKERS, --redis,
#     the same mongodb, each its own spill file) with two durable
#     namespaces: `soak` (ack broker, presence, join/leave) and `soakack`
#     (ack durable, presence), both with history_size HISTORY.
# The load: `herald-bench churn` (bench/README.md, "churn") with both
# nodes' URLs: CLIENTS clients subscribed to PER_CLIENT of CHANNELS
# channels each (half of the channels in each namespace), connecting to
# either node, resubscribing with `since`, unsubscribing and coming back,
# closing, cutting and dropping their connections (mean lifetime LIFETIME
# s, away up to OFFLINE s, and LONG_SHARE of the replacements LONG_OFFLINE
# s, so that some recoveries reach back beyond the memory ring and the
# Redis window into MongoDB); one publisher per channel at RATE/s; one
# witness subscriber per channel and node that never churns. The bench's
# first WARMUP s are the warm-up (memory may grow), the rest is measured.
# Faults, in seconds from the end of the bench's setup:
#   REDIS_AT (0.3 x DURATION)  redis-server SIGKILLed, restarted on the same
#                              port and directory REDIS_DOWN s later (2)
#   FERRET_AT (0.45 x DURATION) FerretDB SIGSTOPped for FERRET_PAUSE s (20),
#                              then SIGCONTed
# so that the second half of the run is free of faults: memory must be
# flat there.
#
# Outputs in OUT (default bench/results/soak-YYYYMMDD-HHMMSS, ignored by
# git): samples.csv (one row a second: the bench's counters and every
# server's pid, RSS and CPU time), events.csv (the faults, with their
# time), churn.json (the bench's report), herald.conf, healthz-end.json
# (both nodes' /healthz after the run), logs/, and summary.md (printed):
# per herald node the RSS at the end of the warm-up, its maximum and last
# value after it and the slope over the second half of the run (least
# squares, MiB/min); redis and FerretDB likewise (for information: redis
# restarts empty of connections); gaps, duplicates, misreported
# recoveries, lost (announced), 4003/4001 resets, publications
# acknowledged vs delivered to the witnesses.
#
# Exit status 0: the bench exited 0 (no gap, no duplicate, no misreported
# recovery, every acknowledged publication reached every witness) and no
# herald node's RSS grew more than RSS_GROWTH_MIB (32) over its value at
# the end of the warm-up, nor with a slope above RSS_SLOPE_MIB_MIN (1.0)
# over the second half; 1 otherwise; 2 set-up errors.
#
# Environment: BUILD (build directory, default build), HERALD, BENCH (the
# binaries, default BUILD/bin/...), FERRETDB_SCRIPTS (default
# scripts/ferretdb; its setup.sh must have built bin/ferretdb), OUT,
# DURATION (600), WARMUP (60), CLIENTS (300), CHANNELS (16), PER_CLIENT
# (3), RATE (1 publication/s per channel), LIFETIME (20), RESUB (10),
# OFFLINE (20), LONG_OFFLINE (90), LONG_SHARE (0.02), HISTORY (50: the
# memory ring; the Redis window keeps 64),
# WORKERS (2 per node), THREADS (2 bench threads), PORT (18700),
# REDIS_AT, REDIS_DOWN, FERRET_AT, FERRET_PAUSE, DRAIN (60: how long the
# witnesses may take to catch up after publishing stops), RSS_GROWTH_MIB,
# RSS_SLOPE_MIB_MIN, REDIS_SERVER.
set -uo pipefail
export LC_ALL=C                  # EPOCHREALTIME with a '.'
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
herald=${HERALD:-$build/bin/herald}
bench=${BENCH:-$build/bin/herald-bench}
ferret=${FERRETDB_SCRIPTS:-$root/scripts/ferretdb}
out=${OUT:-$root/bench/results/soak-$(date -u +%Y%m%d-%H%M%S)}
dur=${DURATION:-600}
warm=${WARMUP:-60}
clients=${CLIENTS:-300}
channels=${CHANNELS:-16}
per_client=${PER_CLIENT:-3}
rate=${RATE:-1}
lifetime=${LIFETIME:-20}
resub=${RESUB:-10}
offline=${OFFLINE:-20}
long_offline=${LONG_OFFLINE:-90}
long_share=${LONG_SHARE:-0.02}
history=${HISTORY:-50}
workers=${WORKERS:-2}
threads=${THREADS:-2}
port0=${PORT:-18700}
redis_at=${REDIS_AT:-$((dur * 30 / 100))}
redis_down=${REDIS_DOWN:-2}
ferret_at=${FERRET_AT:-$((dur * 45 / 100))}
ferret_pause=${FERRET_PAUSE:-20}
drain=${DRAIN:-60}
rss_growth=${RSS_GROWTH_MIB:-32}
rss_slope=${RSS_SLOPE_MIB_MIN:-1.0}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
py=/usr/bin/python3
bench_name=soak
. "$root/bench/lib.sh"
setup_timeout=60

for b in "$herald" "$bench" "$REDIS_SERVER" "$ferret/bin/ferretdb" "$ferret/start.sh" "$ferret/stop.sh"; do
  [ -x "$b" ] || { echo "soak: $b not found (BUILD=dir, HERALD=path; scripts/ferretdb/setup.sh or FERRETDB_SCRIPTS=dir)" >&2; exit 2; }
done
"$py" -c 'import pymongo' 2>/dev/null || { echo "soak: python3-pymongo missing (scripts/deps.sh test)" >&2; exit 2; }
help=$("$herald" --help 2>&1)
for opt in --redis --mongodb; do
  grep -q -- "$opt" <<<"$help" || { echo "soak: $herald has no $opt" >&2; exit 2; }
done
if [ "$warm" -ge "$dur" ] || [ "$redis_at" -lt "$warm" ] || [ "$ferret_at" -le "$redis_at" ] ||
   [ $((ferret_at + ferret_pause)) -ge "$dur" ]; then
  echo "soak: need WARMUP < REDIS_AT < FERRET_AT and FERRET_AT + FERRET_PAUSE < DURATION" >&2
  exit 2
fi

# What this script starts besides lib.sh's servers: FerretDB (stop.sh DIR
# also resumes it if paused); run_cleanup (lib.sh) calls stop_step, which
# stops the nodes first (they write to the store on their way out).
FERRET_DIR=; FERRET_PID=
stop_step() {
  stop_servers
  stop_ferret
}
run_prepare soak
base_env=("${server_env[@]}")
events="$out/events.csv"
echo "unix_s,t_s,event" >"$events"

now_us() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
T0_US=
event() {
  local n; n=$(now_us)
  printf '%s,%s,%s\n' "${EPOCHREALTIME}" \
    "$(awk -v a="$n" -v b="${T0_US:-$n}" 'BEGIN { printf "%.1f", (a - b) / 1e6 }')" "$1" >>"$events"
  echo "soak: [$(awk -v a="$n" -v b="${T0_US:-$n}" 'BEGIN { printf "%6.1f", (a - b) / 1e6 }') s] $1" >&2
}
# sleep_until SECONDS: until SECONDS after T0; 1 when the bench ended first.
sleep_until() {
  local target=$((T0_US + $1 * 1000000))
  while [ "$(now_us)" -lt "$target" ]; do
    kill -0 "$BENCH_PID" 2>/dev/null || return 1
    sleep 0.2
  done
}

# --- Servers -----------------------------------------------------------------
port_free "$port0" && port_free $((port0 + 1)) && port_free $((port0 + 2)) &&
  port_free $((port0 + 3)) || exit 2
FERRET_DIR="$run/ferret"
if ! "$ferret/start.sh" "$FERRET_DIR" $((port0 + 1)) >"$out/logs/ferret.out" 2>&1; then
  echo "soak: FerretDB did not start:" >&2; tail -n 5 "$out/logs/ferret.out" >&2; exit 2
fi
FERRET_PID=$(cat "$FERRET_DIR/ferretdb.pid")
redis_args=(--appendonly yes --appendfsync always)
start_redis "$port0" "$out/logs/redis-1.log" "$run/redis" "${redis_args[@]}" || exit 2
echo "$REDIS" >"$run/redis.pid"
conf="$out/herald.conf"
cat >"$conf" <<EOF
# bench/soak.sh: both nodes (node name and spill file from the environment)
redis = "redis://127.0.0.1:$port0";
mongodb = "mongodb://127.0.0.1:$((port0 + 1))/";
namespaces = (
    { name = "soak"; history_size = $history; durable = true;
      presence = true; join_leave = true; },
    { name = "soakack"; history_size = $history; durable = true;
      ack = "durable"; presence = true; }
);
EOF
for n in 1 2; do
  server_env=("${base_env[@]}" HERALD_NODE_NAME=soak$n HERALD_MONGODB_SPILL_PATH="$run/soak$n.spill")
  start_herald "$herald" $((port0 + 1 + n)) "$out/logs/herald$n.log" --workers "$workers" -c "$conf" || exit 2
done
server_env=("${base_env[@]}")

# --- The bench, and the faults at their times -----------------------------------
cmd=("$bench" churn --url "ws://127.0.0.1:$((port0 + 2))/ws" --url "ws://127.0.0.1:$((port0 + 3))/ws"
     --count "$clients" --channels "$channels" --per-client "$per_client" --rate "$rate" --size 100
     --lifetime "$lifetime" --resub "$resub" --offline "$offline"
     --long-offline "$long_offline" --long-share "$long_share" --threads "$threads"
     --channel-prefix soak: --channel-prefix soakack:
     --warmup "$warm" --duration $((dur - warm)) --drain-timeout "$drain" --setup-timeout "$setup_timeout"
     --server-pid "node1=${HERALDS[0]}" --server-pid "node2=${HERALDS[1]}"
     --server-pidfile "redis=$run/redis.pid" --server-pid "ferretdb=$FERRET_PID"
     --samples "$out/samples.csv" --json "$out/churn.json")
echo "soak: ${cmd[*]}" >&2
echo "soak: servers: ${SERVER_CMDS[*]} ; $REDIS_CMD ; ferretdb (scripts/ferretdb/start.sh)" >&2
printf '%s\n' "${cmd[*]}" >"$out/command.txt"
timeout --kill-after=10 $((setup_timeout + dur + drain + 60)) "${cmd[@]}" >"$out/logs/bench.out" 2>"$out/logs/bench.err" &
BENCH_PID=$!

# The churn starts when the bench's setup is done: its first warm-up row.
while kill -0 "$BENCH_PID" 2>/dev/null && ! grep -q ',warmup,' "$out/samples.csv" 2>/dev/null; do
  sleep 0.2
done
T0_US=$(now_us)
event churn-started
if sleep_until "$redis_at"; then
  kill -KILL "$REDIS" 2>/dev/null; wait "$REDIS" 2>/dev/null
  event redis-killed
  sleep "$redis_down"
  if start_redis "$port0" "$out/logs/redis-2.log" "$run/redis" "${redis_args[@]}"; then
    echo "$REDIS" >"$run/redis.pid"
    event redis-restarted
  else
    event redis-restart-failed
  fi
fi
if sleep_until "$ferret_at"; then
  kill -STOP "$FERRET_PID"
  event ferretdb-paused
  sleep "$ferret_pause"
  kill -CONT "$FERRET_PID"
  event ferretdb-resumed
fi
wait "$BENCH_PID"; status=$?
BENCH_PID=
event "bench-exited-$status"
"$py" - "$out/healthz-end.json" $((port0 + 2)) $((port0 + 3)) <<'EOF'
import json, sys, urllib.request
res = {}
for port in sys.argv[2:]:
    try:
        res[port] = json.load(urllib.request.urlopen("http://127.0.0.1:%s/healthz" % port, timeout=5))
    except Exception as e:
        res[port] = {"error": str(e)}
json.dump(res, open(sys.argv[1], "w"), indent=1)
EOF
stop_step
# Faults the nodes logged, for the report.
grep -h -o '"msg":"[^"]*"' "$out"/logs/herald?.log 2>/dev/null | sort | uniq -c | sort -rn >"$out/logs/herald-messages.txt"
tail -n 5 "$out/logs/bench.err" >&2

"$py" "$root/bench/soak_summary.py" "$out" "$status" "$rss_growth" "$rss_slope" | tee "$out/summary.md"
exit "${PIPESTATUS[0]}"

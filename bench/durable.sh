#!/usr/bin/env bash
# Durable history (issue 5): what writing every publication to MongoDB costs
# live fan-out, and how many publications per second the writer path gets
# into the store. The store is FerretDB on SQLite (scripts/ferretdb/), the
# MongoDB stand-in of the tests: a floor, not MongoDB's figure.
#
#   bench/durable.sh                       # every step, about 9 minutes
#   STEPS="fanout-off fanout-on" DUR=5 bench/durable.sh
#
# Every step gets a fresh FerretDB (start.sh into a temporary directory,
# stop.sh after) and a fresh `herald --workers 2` with one configuration
# that has two namespaces alike but for `durable`: `dur` (durable = true)
# and `mem`. The off steps publish to `mem:` channels, the on steps to
# `dur:` channels of the same server configuration (the writer threads are
# there in both, idle in the off steps). Steps alternate off and on, so
# that both see the noisy machine in about the same state; read the ratios
# of neighbouring steps, not absolute figures.
#
# Steps:
#   fanout-off, fanout-on   herald-bench fanout --channels 1 --subs SUBS
#                           --size 100 --threads 2, closed loop (window 16)
#   rate-off, rate-on       the same at --rate RATE publications/s (latency)
#   persist-bB-wW           herald-bench request --clients 4 --rate
#                           PERSIST_RATE --duration PERSIST_S --warmup 0 on
#                           `dur:` channels (no subscribers) with
#                           mongodb_batch = B, mongodb_writers = W and a
#                           queue that holds the whole burst; the store
#                           then drains the backlog on its own
#   flood-bB-wW             herald-bench request --clients 4 --window 16
#                           (closed loop) for DUR s on `dur:` channels with
#                           the queue of QUEUE: publishing as fast as the
#                           server acknowledges, so the queue fills and the
#                           rest is refused (108 "durable store backlog
#                           full", counted as failed publishes)
# While a step runs, GET /healthz is sampled every 0.1 s ("store":
# backlog, written) together with the CPU time of herald and FerretDB
# (/proc), until the bench is done and the backlog is 0 (at most
# DRAIN_TIMEOUT s). From the samples: the store's rate while saturated
# (written over time while the backlog held at least a batch), the time
# from the first publication until the backlog was 0, and the cores herald
# and FerretDB used meanwhile; and for the drain alone (the bench done,
# only the writers at work) the store's rate and the CPU microseconds per
# stored publication of herald (the writer path) and of FerretDB.
#
# Reports: OUT/NN-<step>.json (herald-bench's report plus `suite`: step,
# server command and configuration, exit status, load, git revision; and
# `store`: the sampled figures), OUT/logs/ (bench output, server logs,
# samples), OUT/summary.json and OUT/summary.md (the tables, also printed).
#
# Environment: BUILD (build directory, default build), HERALD, BENCH (the
# binaries, default BUILD/bin/...), FERRETDB_SCRIPTS (default
# scripts/ferretdb; its setup.sh must have built bin/ferretdb), OUT
# (default bench/results/durable-YYYYMMDD, UTC), STEPS, DUR (10), WARMUP
# (2), SUBS (1000), RATE (100), THREADS (2), PORT (18400: FerretDB PORT,
# herald PORT+1), BATCH (256), WRITERS (2), QUEUE (65536: mongodb_queue_max
# of the fan-out steps), PERSIST_RATE (5000 per client, 4 clients),
# PERSIST_S (5), DRAIN_TIMEOUT (300).
# Exit status: 0 when every step exited 0, every fan-out report is complete
# (no gap, no duplicate, every publication delivered) and the store holds
# every acknowledged durable publication; 1 otherwise; 2 set-up errors.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
herald=${HERALD:-$build/bin/herald}
bench=${BENCH:-$build/bin/herald-bench}
ferret=${FERRETDB_SCRIPTS:-$root/scripts/ferretdb}
out=${OUT:-$root/bench/results/durable-$(date -u +%Y%m%d)}
# Off and on alternate in ABBA order (off on on off ...), so that a drift
# of the machine's load over the run weighs on both alike.
# Closed-loop fan-out swings most with the machine: 8 pairs of it.
fan_abba="fanout-off fanout-on fanout-on fanout-off"
fan_steps="$fan_abba $fan_abba $fan_abba $fan_abba"
rate_steps="rate-off rate-on rate-on rate-off rate-off rate-on rate-on rate-off"
steps=${STEPS:-$fan_steps $rate_steps persist-b64-w2 persist-b256-w2 persist-b1024-w2 persist-b256-w1 persist-b1024-w1 flood-b256-w2}
steps=${steps//,/ }
dur=${DUR:-10}
warm=${WARMUP:-2}
subs=${SUBS:-1000}
rate=${RATE:-100}
threads=${THREADS:-2}
port0=${PORT:-18400}
batch=${BATCH:-256}
writers=${WRITERS:-2}
queue=${QUEUE:-65536}
persist_rate=${PERSIST_RATE:-5000}
persist_s=${PERSIST_S:-5}
persist_clients=4
drain_timeout=${DRAIN_TIMEOUT:-300}
py=/usr/bin/python3
bench_name=durable
. "$root/bench/lib.sh"
setup_timeout=60

for b in "$herald" "$bench" "$ferret/bin/ferretdb" "$ferret/start.sh" "$ferret/stop.sh"; do
  [ -x "$b" ] || { echo "durable: $b not found (BUILD=dir; scripts/ferretdb/setup.sh)" >&2; exit 2; }
done
"$py" -c 'import pymongo' 2>/dev/null || { echo "durable: python3-pymongo missing (scripts/deps.sh test)" >&2; exit 2; }
# What this script started: herald, the sampler, the bench, and FerretDB
# (by its directory: stop.sh DIR); run_cleanup (lib.sh) calls stop_step.
SRV=; SAMPLER=; FERRET_DIR=

stop_step() {
  stop_pid "$SAMPLER"; SAMPLER=
  stop_pid "$SRV"; SRV=
  stop_ferret
}

run_prepare durable

# start_step IDX STEP B W Q: FerretDB and herald for one step; sets SRV,
# FERRET_PID, SERVER_CMD, CONF.
start_step() {
  local idx=$1 step=$2 b=$3 w=$4 q=$5 hport=$((port0 + 1))
  port_free "$port0" && port_free "$hport" || return 1
  FERRET_DIR="$run/ferret-$idx"
  if ! "$ferret/start.sh" "$FERRET_DIR" "$port0" >"$out/logs/$idx-$step.ferret.out" 2>&1; then
    echo "durable: FerretDB did not start:" >&2
    tail -n 5 "$out/logs/$idx-$step.ferret.out" >&2
    return 1
  fi
  FERRET_PID=$(cat "$FERRET_DIR/ferretdb.pid")
  CONF="$run/herald-$idx.conf"
  # The two namespaces differ only in `durable`.
  cat >"$CONF" <<EOF
mongodb = "mongodb://127.0.0.1:$port0/";
mongodb_batch = $b;
mongodb_writers = $w;
mongodb_queue_max = $q;
namespaces = (
    { name = "dur"; history_size = 100; durable = true; },
    { name = "mem"; history_size = 100; }
);
EOF
  env "${server_env[@]}" "$herald" --workers 2 --listen "127.0.0.1:$hport" -c "$CONF" \
    2>"$out/logs/$idx-$step.herald.log" &
  SRV=$!
  SERVER_CMD="${server_env[*]} $herald --workers 2 --listen 127.0.0.1:$hport -c CONF"
  wait_healthy "$hport" 20 || {
    echo "durable: herald not healthy; log:" >&2
    tail -n 5 "$out/logs/$idx-$step.herald.log" >&2
    return 1
  }
}

# The sampler: /healthz and the CPU time of herald and FerretDB every
# 0.1 s, one JSON line each, until the file DONE exists and the backlog is
# 0 (or DRAIN_TIMEOUT after DONE), or herald is gone. Run in the
# background, the function is a subshell: exec makes python that process,
# so that stop_pid reaches it.
sampler() {
  exec "$py" - "$@" <<'EOF'
import json, os, sys, time, urllib.request
port, herald, ferret, done, path, limit = sys.argv[1:7]
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / tick
    except (OSError, IndexError, ValueError):
        return None
t_done = None
with open(path, "w") as f:
    while True:
        t = time.time()
        try:
            h = json.load(urllib.request.urlopen("http://127.0.0.1:%s/healthz" % port, timeout=2))
            st = h.get("store", {})
        except (OSError, ValueError):
            st = {}
        is_done = os.path.exists(done)
        if not os.path.exists("/proc/%s" % herald):
            break
        f.write(json.dumps({"t": round(t, 3), "backlog": st.get("backlog"),
                            "written": st.get("written"), "status": st.get("status"),
                            "herald_cpu": cpu(herald), "ferret_cpu": cpu(ferret),
                            "bench_done": is_done}) + "\n")
        f.flush()
        if is_done:
            t_done = t_done or t
            if st.get("backlog") == 0 or t - t_done > float(limit):
                break
        time.sleep(max(0.0, 0.1 - (time.time() - t)))
EOF
}

# Adds the step, the server command and configuration, and the figures
# from the samples to the bench's report.
annotate() {
  "$py" - "$@" <<'EOF'
import json, os, sys
path, samples, step, server_cmd, conf, wall, status, load, rev, batch = sys.argv[1:11]
try:
    with open(path) as f:
        r = json.load(f)
except (OSError, ValueError):
    sys.exit(0)
rows = []
with open(samples) as f:
    for line in f:
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
batch = int(batch)
s = {"samples": len(rows), "interval_s": 0.1}
ok = [x for x in rows if x.get("written") is not None]
if ok:
    s["written_final"] = ok[-1]["written"]
    s["backlog_final"] = ok[-1]["backlog"]
    s["backlog_peak"] = max(x["backlog"] for x in ok)
    s["failing_seen"] = any(x["status"] == "failing" for x in ok)
    w0 = ok[0]["written"]
    # The first publication: the first sample with something queued or written.
    first = next((x for x in ok if x["backlog"] > 0 or x["written"] > w0), None)
    done = next((x for x in ok if x["bench_done"]), None)
    if first is not None:
        end = next((x for x in ok if x["bench_done"] and x["backlog"] == 0), None)
        s["drained"] = end is not None
        if end is not None:
            s["first_to_empty_s"] = round(end["t"] - first["t"], 2)
            s["end_to_end_pubs_per_s"] = round((end["written"] - w0) / max(end["t"] - first["t"], 1e-9), 1)
        if done is not None:
            s["bench_done_to_empty_s"] = round((end or ok[-1])["t"] - done["t"], 2)
        # Saturated: the writers always had at least a batch waiting. The
        # rate is the written count's growth between the first and the last
        # such sample, and the cores are over the same window.
        sat = [x for x in ok if x["backlog"] >= max(batch, 64)]
        if len(sat) >= 5 and sat[-1]["t"] - sat[0]["t"] >= 1.0:
            a, b = sat[0], sat[-1]
            dt = b["t"] - a["t"]
            s["saturated_s"] = round(dt, 2)
            s["saturated_pubs_per_s"] = round((b["written"] - a["written"]) / dt, 1)
            for k in ("herald_cpu", "ferret_cpu"):
                if a.get(k) is not None and b.get(k) is not None:
                    s[k.replace("_cpu", "_cores_saturated")] = round((b[k] - a[k]) / dt, 2)
        # The drain: from the end of the bench to the empty backlog. Only the
        # writers work in herald then, so its CPU per stored publication is
        # the writer path's (BSON, the driver), FerretDB's is the store's.
        if done is not None and end is not None and end["written"] > done["written"]:
            n = end["written"] - done["written"]
            dt = end["t"] - done["t"]
            s["drain_s"] = round(dt, 2)
            s["drain_pubs_per_s"] = round(n / dt, 1) if dt > 0 else None
            for k in ("herald_cpu", "ferret_cpu"):
                if done.get(k) is not None and end.get(k) is not None:
                    s[k.replace("_cpu", "_us_per_pub_drain")] = round((end[k] - done[k]) / n * 1e6, 1)
                    if dt > 0:
                        s[k.replace("_cpu", "_cores_drain")] = round((end[k] - done[k]) / dt, 2)
        # Whole step, first publication to the end of the drain.
        last = end or ok[-1]
        dt = last["t"] - first["t"]
        for k in ("herald_cpu", "ferret_cpu"):
            if first.get(k) is not None and last.get(k) is not None and dt > 0:
                s[k.replace("_cpu", "_cores_to_empty")] = round((last[k] - first[k]) / dt, 2)
r["store"] = s
r["suite"] = {"step": step, "server_command": server_cmd, "herald_conf": open(conf).read(),
              "ferretdb": "scripts/ferretdb/start.sh DIR PORT (FerretDB 1.24.2, SQLite)",
              "wall_s": round(float(wall), 2), "exit_status": int(status),
              "loadavg_before": load, "git": rev, "nproc": os.cpu_count(),
              "server_roles": ["herald", "ferretdb"]}
with open(path + ".tmp", "w") as f:
    json.dump(r, f, indent=1)
os.replace(path + ".tmp", path)
EOF
}

rev=$(source_rev "$root")
failed=0; idx=0; names=()
echo "durable: steps: $steps (herald $herald, results in $out)" >&2
for step in $steps; do
  idx=$((idx + 1)); n=$(printf '%02d' "$idx")
  b=$batch; w=$writers; q=$queue
  case $step in
    fanout-off|fanout-on|rate-off|rate-on)
      ns=mem; [ "${step#*-}" = on ] && ns=dur
      extra=(); [ "${step%%-*}" = rate ] && extra=(--rate "$rate")
      cmd=("$bench" fanout --channels 1 --subs "$subs" --size 100 --threads "$threads"
           "${extra[@]}" --channel-prefix "$ns:bench." --duration "$dur" --warmup "$warm") ;;
    persist-b*-w*)
      b=${step#persist-b}; b=${b%%-*}; w=${step##*-w}
      # The queue holds the whole burst: nothing is refused, and the store
      # drains the backlog after the bench is done.
      q=$((2 * persist_clients * persist_rate * ${persist_s%.*} + 65536))
      cmd=("$bench" request --clients "$persist_clients" --rate "$persist_rate" --size 100
           --channel-prefix "dur:persist." --duration "$persist_s" --warmup 0) ;;
    flood-b*-w*)
      b=${step#flood-b}; b=${b%%-*}; w=${step##*-w}
      cmd=("$bench" request --clients "$persist_clients" --window 16 --size 100
           --channel-prefix "dur:flood." --duration "$dur" --warmup 0) ;;
    *) echo "durable: unknown step $step" >&2; failed=1; continue ;;
  esac
  name="$n-$step"; names+=("$name")
  json="$out/$name.json"; log="$out/logs/$name"
  rm -f "$json" "$run/done"
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(date +%s.%N)
  if ! start_step "$n" "$step" "$b" "$w" "$q"; then
    failed=1; stop_step; continue
  fi
  sampler $((port0 + 1)) "$SRV" "$FERRET_PID" "$run/done" "$log.samples" "$drain_timeout" &
  SAMPLER=$!
  cmd+=(--url "ws://127.0.0.1:$((port0 + 1))/ws" --setup-timeout "$setup_timeout"
        --server-pid "$SRV" --server-pid "$FERRET_PID" --json "$json")
  echo "durable: [$name] ${cmd[*]}" >&2
  limit=$((2 * setup_timeout + ${warm%.*} + ${dur%.*} + 40))
  timeout --kill-after=10 "$limit" "${cmd[@]}" >"$log.out" 2>"$log.err" &
  BENCH_PID=$!
  wait "$BENCH_PID"; status=$?
  BENCH_PID=
  touch "$run/done"
  wait "$SAMPLER"; SAMPLER=
  stop_step
  wall=$("$py" -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")
  annotate "$json" "$log.samples" "$step" "$SERVER_CMD" "$CONF" "$wall" "$status" "$load" "$rev" "$b"
  cp "$CONF" "$log.conf"
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "durable: [$name] exit $status; tail of $log.err:" >&2
    tail -n 5 "$log.err" >&2
  fi
  printf 'durable: [%s] exit %d in %.0f s\n' "$name" "$status" "$wall" >&2
  sleep 1
done

"$py" "$root/bench/durable_summary.py" "$out" "${names[@]}" || failed=1
exit "$failed"

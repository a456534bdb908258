#!/usr/bin/env bash
# What a spill costs the other durable publishers (issue 11, defect 9):
# publish latency of a steady ack "broker" durable publisher while the
# writer queue, filled during a MongoDB stall, moves to the spill file.
#
#   bench/spill_lock.sh                    # one run with build/bin/herald
#   HERALD=/path/to/other/herald OUT=dir bench/spill_lock.sh
#
# One FerretDB (scripts/ferretdb/start.sh, a temporary directory) and one
# `herald --workers 2` with mongodb_queue_max QUEUE (65536) and a socket
# timeout of STALL_MS (5000) ms. Two herald-bench `request` runs on
# `dur:` (durable, ack broker) channels:
#   probe   1 client at PROBE_RATE (500) publishes/s for DUR (14) s: the
#           publish round trip whose percentiles are reported;
#   filler  4 clients at FILL_RATE (4000) publishes/s each for FILL_S (10)
#           s (FerretDB keeps up with that while it runs).
# One second in, FerretDB is stopped (SIGSTOP): the filler's publications
# fill the queue (acknowledged, waiting to be written), then go to the
# spill file. When the writer's insert times out (STALL_MS), the whole
# queue moves to the spill file; before the fix the store's lock was held
# for all of it (every record encoded and written under the lock), and
# every durable publisher of the node waited. FerretDB is resumed 2 s
# after /healthz reports the store failing (or 20 s in), and the run ends
# with the probe.
#
# Reports: OUT/probe.json and OUT/filler.json (herald-bench), OUT/health.log
# (/healthz every 0.1 s), OUT/herald.log; the probe's latency line (p50,
# p99, p99.9, max in ms), the largest store backlog, and the documents
# stored against the publications acknowledged are printed.
# Environment: BUILD (build), HERALD, BENCH, FERRETDB_SCRIPTS, OUT
# (bench/results/spill-lock-YYYYmmdd-HHMMSS), PORT (18500: FerretDB; herald
# PORT+1), QUEUE, STALL_MS, PROBE_RATE, DUR, FILL_RATE, FILL_S.
# Exit status: 0 when both runs exited 0; 1 otherwise; 2 set-up errors.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
herald=${HERALD:-$build/bin/herald}
bench=${BENCH:-$build/bin/herald-bench}
ferret=${FERRETDB_SCRIPTS:-$root/scripts/ferretdb}
out=${OUT:-$root/bench/results/spill-lock-$(date -u +%Y%m%d-%H%M%S)}
port0=${PORT:-18500}
queue=${QUEUE:-65536}
stall_ms=${STALL_MS:-5000}
fill_rate=${FILL_RATE:-4000}
probe_rate=${PROBE_RATE:-500}
dur=${DUR:-14}
fill_s=${FILL_S:-10}
py=/usr/bin/python3
bench_name=spill_lock
. "$root/bench/lib.sh"

for b in "$herald" "$bench" "$ferret/bin/ferretdb" "$ferret/start.sh" "$ferret/stop.sh"; do
  [ -x "$b" ] || { echo "spill_lock: $b not found (BUILD=dir; scripts/ferretdb/setup.sh)" >&2; exit 2; }
done
SRV=; FERRET_DIR=; FERRET_PID=; PROBE=; FILLER=

stop_step() {
  [ -n "$FERRET_PID" ] && kill -CONT "$FERRET_PID" 2>/dev/null
  stop_pid "$PROBE"; PROBE=
  stop_pid "$FILLER"; FILLER=
  stop_pid "$SRV"; SRV=
  stop_ferret
}

run_prepare spill_lock
hport=$((port0 + 1))
port_free "$port0" && port_free "$hport" || exit 2
FERRET_DIR="$run/ferret"
"$ferret/start.sh" "$FERRET_DIR" "$port0" >"$out/logs/ferret.out" 2>&1 || {
  echo "spill_lock: FerretDB did not start" >&2; exit 2; }
FERRET_PID=$(cat "$FERRET_DIR/ferretdb.pid")
conf="$run/herald.conf"
cat >"$conf" <<EOF
mongodb = "mongodb://127.0.0.1:$port0/?socketTimeoutMS=$stall_ms&serverSelectionTimeoutMS=$stall_ms";
mongodb_queue_max = $queue;
mongodb_spill_path = "$run/herald.spill";
namespaces = ( { name = "dur"; history_size = 100; durable = true; } );
EOF
env "${server_env[@]}" "$herald" --workers 2 --listen "127.0.0.1:$hport" -c "$conf" \
  2>"$out/herald.log" &
SRV=$!
wait_healthy "$hport" 20 || { echo "spill_lock: herald not healthy" >&2; exit 2; }

url="ws://127.0.0.1:$hport/ws"
"$bench" request --url "$url" --clients 1 --rate "$probe_rate" --duration "$dur" \
  --warmup 0 --channel-prefix "dur:probe" --quiet --json "$out/probe.json" \
  >"$out/logs/probe.out" 2>&1 &
PROBE=$!
"$bench" request --url "$url" --clients 4 --rate "$fill_rate" --duration "$fill_s" \
  --warmup 0 --channel-prefix "dur:fill" --quiet --json "$out/filler.json" \
  >"$out/logs/filler.out" 2>&1 &
FILLER=$!
"$py" - "$hport" "$FERRET_PID" "$out/health.log" <<'PY'
import json, os, signal, sys, time, urllib.request
port, ferret, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def store():
    try:
        return json.load(urllib.request.urlopen("http://127.0.0.1:%s/healthz" % port,
                                                timeout=2)).get("store", {})
    except (OSError, ValueError):
        return {}
start = time.monotonic()
stopped = resumed = False
failing_at = None
with open(path, "w") as f:
    while time.monotonic() - start < 40:
        st = store()
        f.write(json.dumps(dict(st, t=round(time.monotonic() - start, 2))) + "\n")
        now = time.monotonic() - start
        if not stopped and now >= 1:
            os.kill(ferret, signal.SIGSTOP)
            stopped = True
            f.write('{"event": "ferretdb stopped"}\n')
        if stopped and failing_at is None and st.get("status") == "failing":
            failing_at = now
            f.write('{"event": "store failing"}\n')
        if stopped and not resumed and ((failing_at is not None and now >= failing_at + 2)
                                        or now >= 21):
            os.kill(ferret, signal.SIGCONT)
            resumed = True
            f.write('{"event": "ferretdb resumed"}\n')
        if resumed and st.get("backlog") == 0:
            break
        time.sleep(0.1)
    if not resumed:
        os.kill(ferret, signal.SIGCONT)
PY
status=0
wait "$PROBE" || status=1; PROBE=
wait "$FILLER" || status=1; FILLER=
"$py" - "$out" "$port0" <<'PY'
import json, sys
out, port = sys.argv[1], int(sys.argv[2])
def load(name):
    try:
        with open("%s/%s.json" % (out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
p = load("probe")
lat = (p or {}).get("latency") or {}
print("probe publish round trip (ms): p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (n=%s, failed=%s)" % (
    lat.get("p50_us", 0) / 1e3, lat.get("p99_us", 0) / 1e3, lat.get("p999_us", 0) / 1e3,
    lat.get("max_us", 0) / 1e3, lat.get("count"), (p or {}).get("failed_publishes")))
acked = sum((r or {}).get("requests_total", 0) - (r or {}).get("failed_publishes", 0)
            for r in (p, load("filler")))
try:
    import pymongo
    c = pymongo.MongoClient("127.0.0.1", port, directConnection=True,
                            serverSelectionTimeoutMS=5000)
    print("stored %d of %d acknowledged" % (c.herald.publications.count_documents({}), acked))
except Exception as e:  # noqa: BLE001 - a report line, not a check
    print("stored: cannot count (%s)" % e)
peak = 0
spilled = 0
with open("%s/health.log" % out) as f:
    for line in f:
        d = json.loads(line)
        peak = max(peak, d.get("backlog") or 0)
        spilled = max(spilled, d.get("spilled") or 0)
print("largest store backlog %d, largest spilled %d" % (peak, spilled))
PY
exit $status

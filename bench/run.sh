#!/usr/bin/env bash
# The standard benchmark suite behind `make bench`: each step starts a fresh
# herald (--workers 2, on loopback), waits for /healthz, runs one
# herald-bench scenario against it with --server-pid and --json, stops the
# server, and at the end bench/report.py renders bench/results/report.html.
# Every step gets its own server, so one step's leftovers (allocator state,
# TIME_WAIT sockets on its port) cannot colour the next one's figures.
#
#   bench/run.sh                 the whole suite (about 2 minutes)
#   BENCH_QUICK=1 bench/run.sh   shorter runs, smaller counts (about 30 s),
#                                into bench/results/quick/
#   BENCH_STEPS="fanout-1k request" bench/run.sh   only those steps
#
# Environment: BUILD (build directory, default build), BENCH_RESULTS (output
# directory instead of bench/results), BENCH_PORT (first port, default 18100;
# step i listens on BENCH_PORT+i), BENCH_NO_REPORT=1 (skip the rendering),
# BENCH_GIT_REV (the revision recorded, when not run from a git checkout).
# Exit status: 0 when every step exited 0, 1 otherwise (the report is
# rendered either way, with each step's exit status).
set -uo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${BENCH_QUICK:-0}
# Quick runs go to their own directory: they never replace the reference run.
if [ "$QUICK" != 0 ]; then OUT=${BENCH_RESULTS:-bench/results/quick}
else OUT=${BENCH_RESULTS:-bench/results}; fi
PORT0=${BENCH_PORT:-18100}
PY=/usr/bin/python3
HERALD=$BUILD/bin/herald
BENCH=$BUILD/bin/herald-bench

ALL_STEPS="fanout-1k fanout-10k fanout-1k-rate fanout-10k-rate connections-15k reconnect-10k request"
STEPS=${BENCH_STEPS:-$ALL_STEPS}
STEPS=${STEPS//,/ }

for b in "$HERALD" "$BENCH"; do
  [ -x "$b" ] || { echo "bench: $b not built (make build, or BUILD=dir)" >&2; exit 2; }
done
mkdir -p "$OUT/logs"

# Durations and counts. Quick mode keeps every scenario but shortens it.
if [ "$QUICK" != 0 ]; then
  DUR=2; WARM=0.5; N_CONNS=4000; N_RECONNECT=2000; N_BIG=5000
else
  DUR=10; WARM=2; N_CONNS=15000; N_RECONNECT=10000; N_BIG=10000
fi
SETUP_TIMEOUT=60

# The server sees only the settings given here, not HERALD_* variables of
# the caller's environment. A longer history in the default namespace
# than the built-in 100 publications (for 120 s) lets the reconnect step
# recover what its subscribers missed while 10,000 of them reconnect.
for v in $(compgen -v HERALD_ || true); do unset "$v"; done
SERVER_ENV=(HERALD_NAMESPACE_DEFAULTS__HISTORY_SIZE=10000 HERALD_LOG_LEVEL=warn
  HERALD_SHUTDOWN_TIMEOUT=2)
# A connection per descriptor: ask for the hard limit (20,000 here).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

py=$PY
bench_name=bench
. bench/lib.sh
SRV=; BENCH_PID=
stop_server() {
  stop_pid "$SRV"
  SRV=
}
cleanup() {
  stop_bench
  stop_server
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; cleanup; exit 130' INT TERM

# start_server PORT LOG: a fresh herald, ready when /healthz answers 200.
start_server() {
  local port=$1 log=$2
  port_free "$port" || return 1
  env "${SERVER_ENV[@]}" "$HERALD" --workers 2 --listen "127.0.0.1:$port" 2>"$log" &
  SRV=$!
  SERVER_CMD="${SERVER_ENV[*]} $HERALD --workers 2 --listen 127.0.0.1:$port"
  wait_healthy "$port" || { echo "bench: herald on port $port not healthy; log: $log" >&2; return 1; }
}

# rate_from FILE FRACTION DEFAULT: publications per second per publisher at
# FRACTION of the closed-loop rate measured in FILE (DEFAULT without it).
rate_from() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
    print(max(1, round(float(sys.argv[2]) * r["publications_per_s"] / r["parameters"]["publishers"])))
except (OSError, ValueError, KeyError, ZeroDivisionError):
    print(sys.argv[3])
EOF
}

# The scenario arguments of each step (without url, durations, pid, json).
step_args() {
  case $1 in
    fanout-1k)       echo "fanout --channels 1 --subs 1000 --size 100" ;;
    fanout-10k)      echo "fanout --channels 1 --subs $N_BIG --size 100 --threads 2" ;;
    fanout-1k-rate)  echo "fanout --channels 1 --subs 1000 --size 100 --rate $(rate_from "$OUT/fanout-1k.json" 0.5 150)" ;;
    fanout-10k-rate) echo "fanout --channels 1 --subs $N_BIG --size 100 --threads 2 --rate $(rate_from "$OUT/fanout-10k.json" 0.5 15)" ;;
    connections-15k) echo "connections --count $N_CONNS --procs 2 --rate 5000" ;;
    reconnect-10k)   echo "reconnect --count $N_RECONNECT --rate 20 --threads 2" ;;
    request)         echo "request --clients 4" ;;
    *) return 1 ;;
  esac
}

# Adds what the bench cannot know to its report: the step, the server's
# command, the wall time and exit status of the step, the machine's load.
annotate() {
  "$PY" - "$@" <<'EOF'
import json, os, sys
path, step, server_cmd, wall, status, load, rev, quick = sys.argv[1:9]
try:
    with open(path) as f:
        r = json.load(f)
except (OSError, ValueError):
    sys.exit(0)
r["suite"] = {"step": step, "server_command": server_cmd, "wall_s": round(float(wall), 2),
              "exit_status": int(status), "loadavg_before": load, "git": rev,
              "quick": quick != "0", "nproc": os.cpu_count()}
with open(path + ".tmp", "w") as f:
    json.dump(r, f, indent=1)
os.replace(path + ".tmp", path)
EOF
}

# The revision measured (BENCH_GIT_REV names it when running from an export).
if [ -n "${BENCH_GIT_REV:-}" ]; then REV=$BENCH_GIT_REV
else REV=$(source_rev .)
fi
failed=0; i=0; t_suite=$(date +%s.%N)
echo "bench: steps: $STEPS (quick=$QUICK, build=$BUILD, results in $OUT)" >&2
for step in $STEPS; do
  args=$(step_args "$step") || { echo "bench: unknown step $step (one of: $ALL_STEPS)" >&2; failed=1; continue; }
  port=$((PORT0 + i)); i=$((i + 1))
  json="$OUT/$step.json"; log="$OUT/logs/$step"
  rm -f "$json"
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(date +%s.%N)
  if ! start_server "$port" "$log.herald.log"; then
    failed=1; stop_server; continue
  fi
  # shellcheck disable=SC2086 # args is a word list on purpose
  cmd=("$BENCH" $args --url "ws://127.0.0.1:$port/ws" --duration "$DUR" --warmup "$WARM"
       --setup-timeout "$SETUP_TIMEOUT" --server-pid "$SRV" --json "$json")
  echo "bench: [$step] ${cmd[*]}" >&2
  # A watchdog: setup, warm-up, measurement, drain and reconnect's wait for
  # the last resubscribe (up to the setup timeout again), plus slack. On
  # expiry timeout signals the bench's whole process group (exit 124).
  limit=$("$PY" -c "import sys; print(int(2 * $SETUP_TIMEOUT + $WARM + $DUR + 40))")
  timeout --kill-after=10 "$limit" "${cmd[@]}" >"$log.out" 2>"$log.err" &
  BENCH_PID=$!
  wait "$BENCH_PID"; status=$?
  BENCH_PID=
  stop_server
  wall=$("$PY" -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")
  annotate "$json" "$step" "$SERVER_CMD" "$wall" "$status" "$load" "$REV" "$QUICK"
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "bench: [$step] exit $status; tail of $log.err:" >&2
    tail -n 5 "$log.err" >&2
  fi
  sed -n '2,6p' "$log.out" >&2
  printf 'bench: [%s] exit %d in %.0f s\n' "$step" "$status" "$wall" >&2
done
printf 'bench: suite done in %.0f s\n' "$("$PY" -c "import sys,time; print(time.time() - float(sys.argv[1]))" "$t_suite")" >&2

if [ "${BENCH_NO_REPORT:-0}" = 0 ]; then
  "$PY" bench/report.py --results "$OUT" || failed=1
fi
exit "$failed"

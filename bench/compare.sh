#!/usr/bin/env bash
# Herald and its peers side by side, in one run: every step runs the same
# herald-bench scenario against a freshly started server of each target in
# turn (herald, nchan, socketio, centrifugo), with --server-pid of every
# server process, and writes one JSON report per step and target. At the
# end bench/compare.py prints the table of bench/RESULTS.md (figures and
# ratios to Herald).
#
#   bench/compare.sh                       # all steps, all targets
#   TARGETS="herald nchan" STEPS="fanout1k" bench/compare.sh
#
# Environment: BUILD (build dir, default build), OUT (default
# bench/results/compare), TARGETS, STEPS (fanout1k fanout10k latency1k
# latency10k conns10k), DUR (measured seconds, 10), WARMUP (2).
# Peers are installed by their setup.sh (bench/peers/*/setup.sh) first.
# Each server gets 2 cores' worth of workers: herald --workers 2, nginx
# worker_processes 2, Socket.IO 2 node workers + redis, Centrifugo
# GOMAXPROCS=2. The bench runs on the same 2 cores (see bench/README.md,
# "Reading the numbers").
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
out=${OUT:-$root/bench/results/compare}
targets=${TARGETS:-herald nchan socketio centrifugo}
steps=${STEPS:-fanout1k fanout10k latency1k latency10k conns10k}
dur=${DUR:-10}
warm=${WARMUP:-2}
bench=$build/bin/herald-bench
run=$(mktemp -d "${TMPDIR:-/tmp}/herald-compare.XXXXXX")
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

for t in $targets; do
  case $t in
    herald) ;;
    nchan|socketio|centrifugo) "$root/bench/peers/$t/setup.sh" >/dev/null || exit 2 ;;
    *) echo "compare.sh: unknown target $t" >&2; exit 2 ;;
  esac
done

# start_target T: starts T on its default port; sets PIDS (server process
# ids for --server-pid, space separated) and STOP (command to stop it).
start_target() {
  local line
  case $1 in
    herald)
      "$build/bin/herald" --workers 2 --listen 127.0.0.1:8080 --log-level warn \
        >"$run/herald.log" 2>&1 &
      PIDS=$!
      STOP="kill $PIDS; wait $PIDS 2>/dev/null"
      for _ in $(seq 100); do
        curl -sf http://127.0.0.1:8080/healthz >/dev/null && return 0
        sleep 0.05
      done
      return 1 ;;
    nchan)
      line=$("$root/bench/peers/nchan/start.sh" --run-dir "$run/nchan") || return 1
      PIDS=$(sed -n 's/.*worker_pids=\([0-9,]*\).*/\1/p' <<<"$line" | tr , ' ')
      STOP="$root/bench/peers/nchan/stop.sh --run-dir $run/nchan" ;;
    socketio)
      line=$("$root/bench/peers/socketio/start.sh" --run-dir "$run/socketio") || return 1
      # Every process of the peer: the primary (hands out connections),
      # the node workers, and redis, which carries every publication
      # through the adapter.
      PIDS="$(sed -n 's/.*primary_pid=\([0-9]*\).*/\1/p' <<<"$line")"
      PIDS="$PIDS $(sed -n 's/.*worker_pids=\([0-9,]*\).*/\1/p' <<<"$line" | tr , ' ')"
      PIDS="$PIDS $(sed -n 's/.*redis_pid=\([0-9]*\).*/\1/p' <<<"$line")"
      STOP="$root/bench/peers/socketio/stop.sh --run-dir $run/socketio" ;;
    centrifugo)
      line=$("$root/bench/peers/centrifugo/start.sh" --run-dir "$run/centrifugo") || return 1
      PIDS=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line")
      STOP="$root/bench/peers/centrifugo/stop.sh --run-dir $run/centrifugo" ;;
  esac
  [ -n "$PIDS" ]
}

step_args() {
  case $1 in
    fanout1k)   echo "fanout --channels 1 --subs 1000 --size 100 --threads 2" ;;
    fanout10k)  echo "fanout --channels 1 --subs 10000 --size 100 --threads 2" ;;
    # Latency at a fixed rate every target sustains: 100 publications/s
    # to 1,000 subscribers, 20/s to 10,000 (100,000 / 200,000 deliveries/s).
    latency1k)  echo "fanout --channels 1 --subs 1000 --size 100 --threads 2 --rate 100" ;;
    latency10k) echo "fanout --channels 1 --subs 10000 --size 100 --threads 2 --rate 20" ;;
    conns10k)   echo "connections --count 10000 --rate 5000 --procs 1" ;;
  esac
}

status=0
for s in $steps; do
  for t in $targets; do
    PIDS= STOP=true
    if ! start_target "$t"; then
      echo "compare.sh: $t did not start" >&2
      eval "$STOP" >/dev/null 2>&1
      status=1
      continue
    fi
    args=$(step_args "$s")
    sp=""
    for p in $PIDS; do sp="$sp --server-pid $p"; done
    echo "== $s $t: herald-bench $args --target $t" >&2
    # shellcheck disable=SC2086
    "$bench" $args --target "$t" --duration "$dur" --warmup "$warm" $sp \
      --quiet --json "$out/$s.$t.json" >"$out/$s.$t.txt" 2>&1 || {
        echo "compare.sh: $s $t failed (see $out/$s.$t.txt)" >&2
        status=1
      }
    eval "$STOP" >/dev/null 2>&1
    sleep 1
  done
done
rm -rf "$run"
/usr/bin/python3 "$root/bench/compare.py" "$out" || status=1
exit $status

#!/usr/bin/env bash
# Starts the Centrifugo peer for herald-bench --target centrifugo: one
# centrifugo process (memory engine, single node) with config.json, bound to
# 127.0.0.1, GOMAXPROCS=2 (this machine's cores; set CF_GOMAXPROCS to
# change it).
#
#   start.sh [--port P] [--run-dir D]
#
# Defaults: port 8094 (or $CF_PORT), run dir $BENCH_RUN_DIR, else
# ${TMPDIR:-/tmp}/herald-centrifugo-<port>. The run dir receives
# centrifugo.pid and centrifugo.log. Prints one line when the server
# answers: "centrifugo ready port=P pid=X". stop.sh with the same --port
# (or --run-dir) stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${CF_PORT:-8094}
run_dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    *) echo "start.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
run_dir=${run_dir:-${BENCH_RUN_DIR:-${TMPDIR:-/tmp}/herald-centrifugo-$port}}
mkdir -p "$run_dir"
bin="$here/bin/centrifugo"
pidf="$run_dir/centrifugo.pid"

if [ ! -x "$bin" ]; then
  echo "start.sh: $bin missing; run $here/setup.sh first" >&2
  exit 2
fi
if [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
  echo "start.sh: $pidf: centrifugo already running (stop.sh first)" >&2
  exit 2
fi

# Someone else on the port would make the readiness check below lie.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "start.sh: 127.0.0.1:$port is already in use" >&2
  exit 2
fi

# The port comes from the environment (it overrides config.json); the
# server runs in the foreground under our own background job, so $! is its
# pid.
GOMAXPROCS=${CF_GOMAXPROCS:-2} CENTRIFUGO_HTTP_SERVER_PORT=$port \
  "$bin" --config "$here/config.json" </dev/null >"$run_dir/centrifugo.log" 2>&1 &
pid=$!
echo "$pid" >"$pidf"

# Ready when the WebSocket endpoint answers a plain GET (400: not an upgrade).
for _ in $(seq 200); do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$pidf"
    echo "start.sh: centrifugo exited (see $run_dir/centrifugo.log)" >&2
    tail -5 "$run_dir/centrifugo.log" >&2 || true
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "centrifugo ready port=$port pid=$pid"
    exit 0
  fi
  sleep 0.05
done
echo "start.sh: centrifugo did not listen on 127.0.0.1:$port within 10 s" >&2
"$here/stop.sh" --run-dir "$run_dir" >/dev/null 2>&1 || true
exit 1

#!/usr/bin/env bash
# Starts the Socket.IO 4 peer for herald-bench --target socketio: its own
# redis-server (loopback, no persistence) and server.js (a node cluster:
# one primary that accepts and N workers that serve, sharing one port).
#
#   start.sh [--port P] [--redis-port R] [--workers N] [--run-dir D]
#
# Defaults: port 8092, redis port 16392, 2 workers, run dir
# ${TMPDIR:-/tmp}/herald-socketio-<port>. The run dir receives redis.pid,
# node.pids (primary first, then the workers), redis.log and node.log.
# Prints one line: "socketio ready port=P redis=R redis_pid=X primary_pid=A
# worker_pids=B,C" (the primary accepts connections and hands them over;
# the workers do the Socket.IO work).
# stop.sh with the same --port (or --run-dir) stops everything.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${SIO_PORT:-8092}
redis_port=${SIO_REDIS_PORT:-16392}
workers=${SIO_WORKERS:-2}
run_dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --redis-port) redis_port=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    *) echo "start.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
run_dir=${run_dir:-${TMPDIR:-/tmp}/herald-socketio-$port}
mkdir -p "$run_dir"

if [ ! -d "$here/node_modules/socket.io" ]; then
  echo "start.sh: node modules missing; run $here/setup.sh first" >&2
  exit 2
fi
if [ -s "$run_dir/node.pids" ] || [ -s "$run_dir/redis.pid" ]; then
  echo "start.sh: $run_dir has pid files: already running? (stop.sh first)" >&2
  exit 2
fi

fail() {
  echo "start.sh: $*" >&2
  "$here/stop.sh" --run-dir "$run_dir" >/dev/null 2>&1 || true
  exit 1
}

# redis-server: loopback only, no RDB snapshots, no AOF, in the foreground
# under our own background job so that its pid is the one we record.
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --daemonize no --protected-mode yes --logfile "$run_dir/redis.log" \
  --dir "$run_dir" </dev/null >/dev/null 2>&1 &
echo $! >"$run_dir/redis.pid"
for _ in $(seq 100); do
  redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
  kill -0 "$(cat "$run_dir/redis.pid")" 2>/dev/null || fail "redis-server exited (see $run_dir/redis.log)"
  sleep 0.05
done
redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG \
  || fail "redis-server did not answer on port $redis_port"

rm -f "$run_dir/node.pids.tmp"
node "$here/server.js" --port "$port" --redis-port "$redis_port" \
  --workers "$workers" --pid-file "$run_dir/node.pids.tmp" \
  </dev/null >"$run_dir/node.log" 2>&1 &
primary=$!
echo "$primary" >"$run_dir/node.pids"
for _ in $(seq 300); do
  [ -s "$run_dir/node.pids.tmp" ] && break
  kill -0 "$primary" 2>/dev/null || fail "server.js exited (see $run_dir/node.log)"
  sleep 0.05
done
[ -s "$run_dir/node.pids.tmp" ] || fail "server.js not ready after 15 s (see $run_dir/node.log)"
mv "$run_dir/node.pids.tmp" "$run_dir/node.pids"
echo "socketio ready port=$port redis=$redis_port redis_pid=$(cat "$run_dir/redis.pid")" \
  "primary_pid=$(head -n 1 "$run_dir/node.pids") worker_pids=$(tail -n +2 "$run_dir/node.pids" | paste -sd,)"

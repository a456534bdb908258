# Shell helpers shared by the bench scripts that start their own servers
# (bench/run.sh, bench/cluster.sh, bench/durable.sh). Sourced, so `wait` reaches the
# caller's children. Needs $py (a python3) and $bench_name (for messages).

# stop_pid PID: SIGTERM, up to 5 s, then SIGKILL; reaps it. Empty: nothing.
stop_pid() {
  local p=$1
  [ -n "$p" ] || return 0
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
  kill -TERM "$p" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}

# stop_bench: stops the herald-bench run in $BENCH_PID, if any (the
# signal reaches its forked children through `timeout`'s process group).
stop_bench() {
  if [ -n "${BENCH_PID:-}" ]; then
    kill -TERM "$BENCH_PID" 2>/dev/null
    wait "$BENCH_PID" 2>/dev/null
    BENCH_PID=
  fi
}

# port_free PORT: nothing answers on 127.0.0.1:PORT (herald listens with
# SO_REUSEPORT: a leftover server would silently take part of the clients).
port_free() {
  if "$py" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1" 2>/dev/null; then
    echo "$bench_name: something already listens on 127.0.0.1:$1 (choose other ports: see the script's header)" >&2
    return 1
  fi
}

# wait_healthy PORT [SECONDS]: /healthz answers 200 within SECONDS (10)
# (in cluster mode: broker up).
wait_healthy() {
  "$py" - "$1" "${2:-10}" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        if urllib.request.urlopen("http://127.0.0.1:%s/healthz" % sys.argv[1], timeout=1).status == 200:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
PY
}

# source_rev DIR: the revision of the tree measured, "+dirty" when tracked
# files differ from it ("unknown" outside git).
source_rev() {
  local rev
  rev=$(git -C "$1" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$(git -C "$1" status --porcelain --untracked-files=no 2>/dev/null)" ] && rev="$rev+dirty"
  echo "$rev"
}

# Shell helpers shared by the bench scripts that start their own servers
# (bench/run.sh, bench/cluster.sh, bench/durable.sh, bench/ab.sh,
# bench/spill_lock.sh, bench/soak.sh). Sourced, so `wait` reaches the
# caller's children. Needs $py (a python3) and
# $bench_name (for messages).

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

# stop_ferret: stops the FerretDB the script started in $FERRET_DIR (with
# $ferret/start.sh; stop.sh also resumes it if paused), if any.
stop_ferret() {
  if [ -n "${FERRET_DIR:-}" ]; then
    "$ferret/stop.sh" "$FERRET_DIR" >/dev/null 2>&1
    FERRET_DIR=
  fi
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

# --- The servers of one step: herald processes and a redis-server ----------
# For scripts that start fresh servers per step and sample them all
# (cluster.sh, ab.sh). The caller sets server_env (an array: the herald
# environment) and a temporary directory for redis; these functions keep
# HERALDS (herald pids), REDIS (its pid) and REDIS_CMD, and start_herald
# adds each herald's command to SERVER_CMDS (for the report; the caller
# adds REDIS_CMD where redis stands among its --server-pid).

# start_redis PORT LOG DIR [ARG...]: a redis-server without persistence,
# its files in DIR, ready when it answers PING; ARGs are added to its
# command line, where they override (e.g. --appendonly yes). REDIS_SERVER:
# the binary.
start_redis() {
  local port=$1 log=$2 dir=$3 rs=${REDIS_SERVER:-/usr/bin/redis-server}
  shift 3
  port_free "$port" || return 1
  mkdir -p "$dir"
  "$rs" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --logfile "" "$@" >"$log" 2>&1 &
  REDIS=$!
  REDIS_CMD="$rs --port $port --bind 127.0.0.1 --save '' --appendonly no${*:+ $*}"
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
    kill -0 "$REDIS" 2>/dev/null || break
    sleep 0.05
  done
  echo "$bench_name: redis-server on port $port did not start; log: $log" >&2
  return 1
}

# start_herald BIN PORT LOG ARGS...: a herald listening on 127.0.0.1:PORT
# with server_env, ready when /healthz says 200 (in cluster mode: the
# broker is up). Its stdout goes to LOG too: libmongoc prints its own
# lines there (no log handler of herald's; durable.sh, soak.sh).
start_herald() {
  local bin=$1 port=$2 log=$3
  shift 3
  port_free "$port" || return 1
  env "${server_env[@]}" "$bin" --listen "127.0.0.1:$port" "$@" >"$log" 2>&1 &
  HERALDS+=($!)
  SERVER_CMDS+=("${server_env[*]} $bin --listen 127.0.0.1:$port $*")
  wait_healthy "$port" || {
    echo "$bench_name: herald on port $port not healthy; log: $log" >&2
    tail -n 5 "$log" >&2
    return 1
  }
}

# stop_servers: the herald processes first, then redis (the nodes would
# only log "broker down" the other way round).
stop_servers() {
  local p
  for p in "${HERALDS[@]}"; do stop_pid "$p"; done
  HERALDS=()
  [ -n "${REDIS:-}" ] && stop_pid "$REDIS"
  REDIS=
}

# annotate_report FILE STEP WALL STATUS LOAD REV ROLES [KEY=VALUE ...] -- CMD...:
# adds what the bench cannot know to its report, as a `suite` object: the
# step, every server process's command and role (ROLES: comma-separated,
# in the order of the report's servers[]), wall time and exit status of
# the step, the load before it, the revision measured; KEY=VALUE pairs are
# added as strings. A missing or unreadable report is left alone.
annotate_report() {
  "$py" - "$@" <<'PY'
import json, os, sys
path, step, wall, status, load, rev, roles = sys.argv[1:8]
rest = sys.argv[8:]
sep = rest.index("--") if "--" in rest else len(rest)
extra = dict(kv.split("=", 1) for kv in rest[:sep])
cmds = rest[sep + 1:]
try:
    with open(path) as f:
        r = json.load(f)
except (OSError, ValueError):
    sys.exit(0)
r["suite"] = {"step": step, "server_command": " ; ".join(cmds), "server_commands": cmds,
              "server_roles": roles.split(","),
              "wall_s": round(float(wall), 2), "exit_status": int(status),
              "loadavg_before": load, "git": rev, "quick": False,
              "nproc": os.cpu_count()}
r["suite"].update(extra)
with open(path + ".tmp", "w") as f:
    json.dump(r, f, indent=1)
os.replace(path + ".tmp", path)
PY
}

# run_prepare NAME: what a benchmark script does before its first server:
# OUT/logs and a scratch directory ($run, removed by run_cleanup), the
# open-file limit raised to the hard limit (one connection per
# descriptor), and the servers kept from the caller's HERALD_* variables
# (herald reads them as configuration): server_env is what they get.
# Then `trap run_cleanup EXIT` runs stop_step (the script's own, when it
# defines one), stop_bench and stop_servers; a signal ends the script
# through it, and a second signal cannot cut it short.
run_prepare() {
  local name=$1
  mkdir -p "$out/logs"
  run=$(mktemp -d "${TMPDIR:-/tmp}/herald-$name.XXXXXX")
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  for v in $(compgen -v HERALD_ || true); do unset "$v"; done
  server_env=(HERALD_LOG_LEVEL=warn HERALD_SHUTDOWN_TIMEOUT=2)
  HERALDS=(); REDIS=; BENCH_PID=
  trap run_cleanup EXIT
  trap "echo '$name: interrupted' >&2; exit 130" INT TERM
}

run_cleanup() {
  trap '' INT TERM
  stop_bench
  if declare -F stop_step >/dev/null; then stop_step; fi
  stop_servers
  rm -rf "$run"
}

# ab_binaries: the two servers and the bench of an A/B script, from
# BUILD, HERALD_A, HERALD_B and BENCH (defaults: BUILD=build and its
# bin/herald and bin/herald-bench; $root is the repository).
ab_binaries() {
  build=${BUILD:-$root/build}
  herald_a=${HERALD_A:-$build/bin/herald}
  herald_b=${HERALD_B:-$build/bin/herald}
  bench=${BENCH:-$build/bin/herald-bench}
}


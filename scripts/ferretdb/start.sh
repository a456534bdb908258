#!/usr/bin/env bash
# Starts FerretDB (built by setup.sh) with its SQLite backend on a loopback
# port, as the MongoDB stand-in for Herald's durable history in tests.
#
#   start.sh DIR PORT
#
# DIR (created if missing) holds the SQLite files (one per database), and
# also ferretdb.pid and ferretdb.log; starting again on the same DIR keeps
# the data. FerretDB listens on 127.0.0.1:PORT; start.sh returns once the
# server answers a MongoDB `ping` (pymongo, Debian's python3-pymongo from
# `scripts/deps.sh test`) and prints one line:
#   ferretdb ready port=PORT pid=PID dir=DIR
# Exit status 2: usage, binary missing, already running or port taken;
# 1: FerretDB exited or did not answer within FERRETDB_START_TIMEOUT_S
# seconds (default 30), with the log's tail on stderr. stop.sh DIR stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -ne 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: start.sh DIR PORT" >&2
  exit 2
fi
port=$2
mkdir -p "$1"
dir=$(cd "$1" && pwd)
bin="$here/bin/ferretdb"
pidf="$dir/ferretdb.pid"
logf="$dir/ferretdb.log"
timeout_s=${FERRETDB_START_TIMEOUT_S:-30}
py=/usr/bin/python3
[ -x "$py" ] || py=python3

if [ ! -x "$bin" ]; then
  echo "start.sh: $bin missing; run $here/setup.sh first" >&2
  exit 2
fi
if ! "$py" -c 'import pymongo' 2>/dev/null; then
  echo "start.sh: $py has no pymongo (install python3-pymongo: scripts/deps.sh test)" >&2
  exit 2
fi
if [ -s "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null \
   && grep -q ferretdb "/proc/$(cat "$pidf")/cmdline" 2>/dev/null; then
  echo "start.sh: $pidf: ferretdb already running (stop.sh $dir first)" >&2
  exit 2
fi
# Someone else on the port would make the readiness check below lie.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "start.sh: 127.0.0.1:$port is already in use" >&2
  exit 2
fi

# FerretDB also reads FERRETDB_* variables; only the flags below count.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^FERRETDB_' || true)
# The state dir is off (no state.json, no telemetry), and so is the debug
# HTTP listener (it would take port 8088 for every instance). The SQLite
# URL must name a directory and end in "/". The process runs under our own
# background job, so $! is its pid; its cwd is DIR.
(cd "$dir" && exec "$bin" --handler=sqlite --sqlite-url="file:$dir/" \
  --listen-addr="127.0.0.1:$port" --state-dir=- --telemetry=disable \
  --debug-addr=- --log-level=warn) </dev/null >>"$logf" 2>&1 &
pid=$!
echo "$pid" >"$pidf"

# Ready when a MongoDB ping succeeds; give up when the process exits.
if "$py" - "$port" "$pid" "$timeout_s" <<'EOF'
import os, sys, time
import pymongo
port, pid, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                sys.exit(3)
    except (ProcessLookupError, FileNotFoundError):
        sys.exit(3)
    c = pymongo.MongoClient("127.0.0.1", port, directConnection=True,
                            serverSelectionTimeoutMS=250, connectTimeoutMS=250,
                            socketTimeoutMS=1000)
    try:
        if c.admin.command("ping").get("ok") == 1:
            sys.exit(0)
    except pymongo.errors.PyMongoError:
        time.sleep(0.05)
    finally:
        c.close()
sys.exit(4)
EOF
then
  echo "ferretdb ready port=$port pid=$pid dir=$dir"
  exit 0
else
  rc=$?
fi
if [ "$rc" = 3 ]; then
  echo "start.sh: ferretdb exited at start (see $logf):" >&2
else
  echo "start.sh: ferretdb did not answer ping on 127.0.0.1:$port within ${timeout_s}s (see $logf):" >&2
fi
tail -15 "$logf" >&2 || true
"$here/stop.sh" "$dir" >/dev/null 2>&1 || true
exit 1

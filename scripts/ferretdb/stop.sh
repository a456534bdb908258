#!/usr/bin/env bash
# Stops the FerretDB started by start.sh DIR: SIGTERM (plus SIGCONT, so a
# process paused with SIGSTOP can act on it) to the pid in DIR/ferretdb.pid,
# SIGKILL when it is still there after FERRETDB_STOP_TIMEOUT_S seconds
# (default 10), then removes the pid file. The data in DIR stays.
#
#   stop.sh DIR
#
# Prints "ferretdb stopped pid=PID (SIGTERM|SIGKILL)" when it stopped one;
# nothing when none was running. Exit status 1 if the process survived
# SIGKILL (it cannot, unless it is not ours to kill).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: stop.sh DIR" >&2
  exit 2
fi
dir=$1
pidf="$dir/ferretdb.pid"
timeout_s=${FERRETDB_STOP_TIMEOUT_S:-10}
[ -s "$pidf" ] || exit 0
pid=$(cat "$pidf")

# Running, and not a zombie waiting for its parent to reap it.
alive() {
  local st
  st=$(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null | awk '{ print $1 }') || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
# Waits up to $1 seconds for the process to go.
gone_within() {
  local end=$((SECONDS + $1))
  while alive; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.05
  done
}

# Only a process that runs our binary is ours to stop (a stale pid file may
# name a recycled pid).
if alive && grep -q ferretdb "/proc/$pid/cmdline" 2>/dev/null; then
  how=SIGTERM
  kill -TERM "$pid" 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true
  if ! gone_within "$timeout_s"; then
    how=SIGKILL
    kill -KILL "$pid" 2>/dev/null || true
    if ! gone_within 5; then
      echo "stop.sh: ferretdb pid $pid survived SIGKILL" >&2
      exit 1
    fi
  fi
  echo "ferretdb stopped pid=$pid ($how)"
fi
rm -f "$pidf"

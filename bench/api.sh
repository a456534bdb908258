#!/usr/bin/env bash
# Publishing through the server HTTP API side by side with the WebSocket
# publish path, Herald and Centrifugo, in one run (issue 12): the same
# number of publishers, each with one publication in flight, through
#
#   herald-api       herald-bench api --api-conns N        (Herald's api_listen,
#                    HTTP/1.1 keep-alive, libcurl)
#   herald-ws        herald-bench request --clients N      (Herald's WebSocket
#                    publish, the C client library, --window 1)
#   centrifugo-api   herald-bench api --target centrifugo  (POST /api/publish)
#   centrifugo-ws    herald-bench request --target centrifugo (client publish)
#
# Steps (STEPS):
#   rt<N>     round trips, no subscribers: N publishers (connections), each
#             on its own channel, closed loop (CONNS lists the N: 1 4 16)
#   fan<N>    the same with SUBS (100) WebSocket subscribers per channel,
#             checking that every acknowledged publication reaches every
#             subscriber in order; the WebSocket side is then `fanout
#             --pubs N --channels N --subs SUBS --in-flight 1` (the same
#             shape: one publication in flight per publisher, at most 16
#             per publisher ahead of the channel's last subscriber)
# Every run gets a fresh server (herald --workers 2 with api_listen and a
# key; Centrifugo by bench/peers/centrifugo/start.sh, GOMAXPROCS=2), the
# bench one thread, --server-pid of the server. ROUNDS (3) rounds; in each
# round every step runs every kind, the kinds' order rotated from round to
# round, so that a drift of the shared machine's load weighs on each kind
# alike. Compare ratios within a round (summary: medians over the rounds of
# the figures and of the per-round ratios).
#
#   bench/api.sh                                 # about 11 minutes
#   ROUNDS=1 DUR=3 WARMUP=1 STEPS="rt4" bench/api.sh   # smoke, ~30 s
#
# Environment: BUILD (default build), HERALD, BENCH (default
# BUILD/bin/...), OUT (default bench/results/api-YYYYMMDD-HHMMSS), ROUNDS
# (3), STEPS (rt1 rt4 rt16 fan4), KINDS (herald-api herald-ws
# centrifugo-api centrifugo-ws), SUBS (100), SIZE (100), DUR (10), WARMUP
# (2), PORT (18600: herald PORT (WebSocket) and PORT+1 (api_listen),
# Centrifugo PORT+2).
# Output: OUT/RR-<step>-<kind>.json (herald-bench's report plus `suite`),
# OUT/logs/, OUT/summary.md and summary.json (bench/api_summary.py; the
# table of bench/RESULTS.md). Exit status 1 when a run failed or a report
# shows errors, failed publishes, gaps, duplicates or missing deliveries.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
herald=${HERALD:-$build/bin/herald}
bench=${BENCH:-$build/bin/herald-bench}
out=${OUT:-$root/bench/results/api-$(date -u +%Y%m%d-%H%M%S)}
rounds=${ROUNDS:-3}
steps=${STEPS:-rt1 rt4 rt16 fan4}
kinds=(${KINDS:-herald-api herald-ws centrifugo-api centrifugo-ws})
subs=${SUBS:-100}
size=${SIZE:-100}
dur=${DUR:-10}
warm=${WARMUP:-2}
port=${PORT:-18600}
api_port=$((port + 1))
cf_port=$((port + 2))
cf=$root/bench/peers/centrifugo
py=/usr/bin/python3
bench_name=api.sh
# A bench key on loopback (herald's HERALD_API_KEY; not a secret).
key=herald-bench-api-key-0123456789abcdef

. "$root/bench/lib.sh"
for b in "$herald" "$bench"; do
  [ -x "$b" ] || { echo "api.sh: $b not built (make build, or BUILD=dir)" >&2; exit 2; }
done
for k in "${kinds[@]}"; do
  case $k in
    centrifugo-*) "$cf/setup.sh" >/dev/null || exit 2; break ;;
  esac
done
run_prepare api
SERVER_CMDS=()
server_env+=(HERALD_API_LISTEN=127.0.0.1:$api_port HERALD_API_KEY=$key)
CF_DIR=
stop_step() {
  if [ -n "$CF_DIR" ]; then "$cf/stop.sh" --run-dir "$CF_DIR" >/dev/null 2>&1; CF_DIR=; fi
}
rev=$(source_rev "$root")

# start_kind KIND: its server; sets PIDS (for --server-pid) and CMDS.
start_kind() {
  local line
  PIDS=; CMDS=()
  case $1 in
    herald-*)
      start_herald "$herald" "$port" "$out/logs/$tag.herald.log" --workers 2 || return 1
      PIDS=${HERALDS[0]}
      CMDS=("${SERVER_CMDS[@]}"); SERVER_CMDS=() ;;
    centrifugo-*)
      port_free "$cf_port" || return 1
      CF_DIR=$run/cf-$tag
      line=$("$cf/start.sh" --port "$cf_port" --run-dir "$CF_DIR") || return 1
      PIDS=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line")
      CMDS=("GOMAXPROCS=2 centrifugo --config bench/peers/centrifugo/config.json (port $cf_port)") ;;
  esac
  [ -n "$PIDS" ]
}

# bench_args STEP KIND: the scenario's arguments.
bench_args() {
  local step=$1 kind=$2 n=${1#rt}
  n=${n#fan}
  local s=0
  case $step in fan*) s=$subs ;; esac
  case $kind in
    herald-api) echo "api --api-conns $n --subs $s --api-url http://127.0.0.1:$api_port --api-key $key --url ws://127.0.0.1:$port/ws" ;;
    centrifugo-api) echo "api --target centrifugo --api-conns $n --subs $s --api-url http://127.0.0.1:$cf_port --url ws://127.0.0.1:$cf_port" ;;
    herald-ws|centrifugo-ws)
      local tgt="--url ws://127.0.0.1:$port/ws"
      [ "$kind" = centrifugo-ws ] && tgt="--target centrifugo --url ws://127.0.0.1:$cf_port"
      if [ "$s" = 0 ]; then echo "request --clients $n $tgt"
      else echo "fanout --pubs $n --channels $n --subs $s --in-flight 1 $tgt"; fi ;;
  esac
}

failed=0; i=0
# The watchdog of a run: setup, warm-up, measurement, drain, and slack.
limit=$("$py" -c "import sys; print(int(float(sys.argv[1]) + float(sys.argv[2]) + 100))" "$dur" "$warm")
echo "api.sh: rounds=$rounds steps=$steps kinds=${kinds[*]} dur=$dur; reports in $out" >&2
for r in $(seq "$rounds"); do
  for step in $steps; do
    # Rotate the kinds' order from round to round.
    n=${#kinds[@]}
    for j in $(seq 0 $((n - 1))); do
      kind=${kinds[$(((j + r - 1) % n))]}
      i=$((i + 1))
      tag=$(printf '%02d-%s-%s' "$r" "$step" "$kind")
      json=$out/$tag.json
      load=$(cut -d' ' -f1-3 /proc/loadavg)
      t0=$(date +%s.%N)
      if ! start_kind "$kind"; then
        echo "api.sh: [$tag] server did not start" >&2
        failed=1; stop_step; stop_servers; continue
      fi
      # shellcheck disable=SC2207 # a word list on purpose
      cmd=("$bench" $(bench_args "$step" "$kind") --size "$size" --duration "$dur"
           --warmup "$warm" --threads 1 --server-pid "$PIDS" --quiet --json "$json")
      echo "api.sh: [$tag] ${cmd[*]}" >&2
      timeout --kill-after=10 "$limit" "${cmd[@]}" >"$out/logs/$tag.out" 2>"$out/logs/$tag.err" &
      BENCH_PID=$!
      wait "$BENCH_PID"; status=$?
      BENCH_PID=
      stop_step; stop_servers
      wall=$("$py" -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")
      annotate_report "$json" "$step" "$wall" "$status" "$load" "$rev" server \
        kind="$kind" round="$r" -- "${CMDS[@]}"
      if [ "$status" -ne 0 ]; then
        failed=1
        echo "api.sh: [$tag] exit $status; tail of its stderr:" >&2
        tail -n 5 "$out/logs/$tag.err" >&2
      fi
      grep -E "requests/s|round trip" "$out/logs/$tag.out" | sed 's/^/    /' >&2
    done
  done
done
"$py" "$root/bench/api_summary.py" "$out" || failed=1
exit "$failed"

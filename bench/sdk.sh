#!/usr/bin/env bash
# Delivery latency through the JavaScript SDK beside the C client, in one
# run (issue 14): SDK_CLIENTS (200) subscribers made with clients/js in
# Node (SDK_PROCS processes, 2) and herald-bench's own subscribers on the
# same channels of one herald, while herald-bench publishes at a fixed
# rate. Both sides measure the same thing: from the stamp in the payload
# (send time, CLOCK_MONOTONIC: bench/src/stamp.h) to the delivery to the
# application (the SDK: its publication handler; herald-bench: its
# subscriber callback).
#
#   bench/sdk.sh                          # json, then msgpack
#   ENCODINGS=msgpack SDK_CLIENTS=400 bench/sdk.sh
#
# Steps per encoding: a fresh `herald --workers 2`; the SDK processes
# (bench/sdk/subscribers.mjs) subscribe SDK_CLIENTS / CHANNELS clients per
# channel to the channels `herald-bench --run-id` will use and say
# "ready"; then
#   herald-bench fanout --channels CHANNELS --subs C_SUBS --pubs PUBS
#     --rate RATE --size 100 --sub-transport SUB_TRANSPORT --run-id ID ...
# (SUB_TRANSPORT client: herald-bench's subscribers use the C client
# library, clients/c; auto: its lean reader). When it exits (after its
# drain), the SDK processes write their latencies; bench/sdk/summary.mjs
# prints one table per encoding (OUT/<encoding>/summary.json).
#
# The SDK side records the window from WARMUP s after the first stamp it
# sees for DUR s, herald-bench its own measured window (the same length,
# starting at the end of its warm-up): the same publications within a few
# milliseconds.
#
# Environment: BUILD (build), HERALD, BENCH, OUT
# (bench/results/sdk-YYYYmmdd-HHMMSS), PORT (18700), ENCODINGS ("json
# msgpack"), SDK_CLIENTS (200), SDK_PROCS (2), CHANNELS (10), C_SUBS (20 per
# channel), PUBS (10), RATE (20 publications/s per publisher), DUR (10),
# WARMUP (2), SUB_TRANSPORT (client).
# Exit status: 0 when every run passed its checks (no gap, no duplicate,
# every publication delivered to every SDK client); 1 otherwise; 2 set-up
# errors.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
herald=${HERALD:-$build/bin/herald}
bench=${BENCH:-$build/bin/herald-bench}
out=${OUT:-$root/bench/results/sdk-$(date -u +%Y%m%d-%H%M%S)}
port=${PORT:-18700}
encodings=${ENCODINGS:-json msgpack}
sdk_clients=${SDK_CLIENTS:-200}
sdk_procs=${SDK_PROCS:-2}
channels=${CHANNELS:-10}
c_subs=${C_SUBS:-20}
pubs=${PUBS:-10}
rate=${RATE:-20}
dur=${DUR:-10}
warmup=${WARMUP:-2}
sub_transport=${SUB_TRANSPORT:-client}
py=/usr/bin/python3
bench_name=sdk
. "$root/bench/lib.sh"

for b in "$herald" "$bench"; do
  [ -x "$b" ] || { echo "sdk: $b not found (make build, or BUILD=dir)" >&2; exit 2; }
done
"$root/scripts/js.sh" build >/dev/null || { echo "sdk: the SDK did not build (scripts/js.sh build)" >&2; exit 2; }
"$root/scripts/js.sh" deps "$root/bench/sdk" || exit 2
node=$("$root/scripts/node.sh") || exit 2
mkdir -p "$out"

SRV=; SUBS=(); CATS=()
cleanup() {
  for p in "${SUBS[@]}"; do stop_pid "$p"; done
  SUBS=()
  stop_pid "$SRV"; SRV=
}
trap cleanup EXIT
trap 'exit 2' INT TERM

rc=0
for enc in $encodings; do
  dir="$out/$enc"
  mkdir -p "$dir"
  port_free "$port" || exit 2
  "$herald" --workers 2 --listen "127.0.0.1:$port" 2>"$dir/herald.log" &
  SRV=$!
  wait_healthy "$port" || { echo "sdk: herald did not start; see $dir/herald.log" >&2; exit 2; }
  run_id=$(printf '%06x' $(( (RANDOM << 8 | RANDOM) & 0xffffff )))

  # The SDK processes, each with its share of the clients; each says
  # "ready N" on its stdout (a fifo read here) once subscribed.
  per=$(( sdk_clients / sdk_procs ))
  for k in $(seq 0 $(( sdk_procs - 1 ))); do
    n=$per; [ "$k" -eq $(( sdk_procs - 1 )) ] && n=$(( sdk_clients - per * (sdk_procs - 1) ))
    mkfifo "$dir/sdk-$k.fifo"
    "$node" "$root/bench/sdk/subscribers.mjs" --url "ws://127.0.0.1:$port/ws" \
      --prefix sdk. --run-id "$run_id" --channels "$channels" --clients "$n" \
      --first $(( k * per )) --encoding "$enc" --warmup "$warmup" --duration "$dur" \
      --out "$dir/sdk-$k.bin" </dev/null >"$dir/sdk-$k.fifo" 2>"$dir/sdk-$k.log" &
    SUBS+=($!)
    exec {fd}<"$dir/sdk-$k.fifo"
    if ! IFS= read -r -t 60 line <&$fd || [ "${line%% *}" != ready ]; then
      echo "sdk: SDK process $k not ready: ${line:-nothing}; see $dir/sdk-$k.log" >&2
      exit 2
    fi
    # The rest of its output (the counter line at the end) goes to a file.
    cat <&$fd >"$dir/sdk-$k.json" &
    CATS+=($!)
    exec {fd}<&-
  done

  cmd=("$bench" fanout --url "ws://127.0.0.1:$port/ws" --encoding "$enc"
       --channels "$channels" --subs "$c_subs" --pubs "$pubs" --rate "$rate"
       --size 100 --duration "$dur" --warmup "$warmup" --threads 1
       --sub-transport "$sub_transport" --channel-prefix sdk. --run-id "$run_id"
       --server-pid "$SRV" --quiet --json "$dir/bench.json")
  echo "sdk: $enc: ${cmd[*]}" >&2
  "${cmd[@]}" >"$dir/bench.txt" 2>"$dir/bench.log" || { echo "sdk: herald-bench failed ($?); see $dir/bench.log" >&2; rc=1; }

  # herald-bench has drained (every acknowledged publication delivered to
  # its subscribers, or 5 s): the SDK processes drain too (until nothing
  # arrived for 0.5 s) and write what they measured.
  for p in "${SUBS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${SUBS[@]}" "${CATS[@]}"; do wait "$p" 2>/dev/null; done
  SUBS=(); CATS=()
  rm -f "$dir"/sdk-*.fifo
  stop_pid "$SRV"; SRV=
  if [ -s "$dir/bench.json" ]; then
    "$node" "$root/bench/sdk/summary.mjs" "$dir" | tee "$dir/summary.md" || rc=1
  fi
  echo
done
exit $rc

#!/usr/bin/env bash
# Instructions per delivery of two herald binaries, counted by callgrind: a
# figure the machine's load does not move (valgrind counts the user-space
# instructions the server executes, not time), for comparing two versions of
# the server's hot path when the closed-loop ns/delivery of bench/ab.sh is
# too noisy to tell.
#
#   HERALD_A=/path/to/old/herald HERALD_B=build/bin/herald bench/instr.sh
#
# Each run starts `herald --workers 2` under `valgrind --tool=callgrind`,
# drives one channel of SUBS subscribers at RATE publications per second
# for SHORT and then, in another run, for LONG measured seconds
# (herald-bench fanout, 100-byte payloads), and stops the server. The
# steady-state cost is (instructions of the long run - instructions of the
# short run) / (deliveries of the long run - deliveries of the short run):
# start-up, connections and shutdown cancel out. RUNS repetitions, A and B
# alternating; the table gives each repetition and the median. Repetitions
# differ by 1-3 %: how often the loops wake (timers, idle passes) depends on
# timing.
#
# Environment: HERALD_A, HERALD_B (default BUILD/bin/herald), BUILD
# (default build), BENCH (default BUILD/bin/herald-bench), ENV_A, ENV_B
# (VAR=value words given to A's or B's server only, e.g.
# ENV_A=HERALD_METRICS=false: bench/metrics_ab.sh), RUNS (5), SUBS
# (200), RATE (20), SHORT (5), LONG (15), PORT (18700), OUT (default
# bench/results/instr-YYYYMMDD-HHMMSS, ignored by git). Needs valgrind.
# Exit status: 0, 1 when a run delivered less than expected, 2 set-up.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-5}
read -r -a env_a <<<"${ENV_A:-}"
read -r -a env_b <<<"${ENV_B:-}"
subs=${SUBS:-200}
rate=${RATE:-20}
short=${SHORT:-5}
long=${LONG:-15}
port=${PORT:-18700}
out=${OUT:-$root/bench/results/instr-$(date -u +%Y%m%d-%H%M%S)}
py=/usr/bin/python3
. "$root/bench/lib.sh"
ab_binaries   # build, herald_a, herald_b, bench

command -v valgrind >/dev/null || { echo "instr: valgrind is not installed" >&2; exit 2; }
for b in "$herald_a" "$herald_b" "$bench"; do
  [ -x "$b" ] || { echo "instr: $b is not executable" >&2; exit 2; }
done
mkdir -p "$out"
# herald reads HERALD_* as configuration: none of this script's may reach it.
for v in $(compgen -v HERALD_ || true); do unset "$v"; done
VG=
trap 'trap "" INT TERM; [ -n "$VG" ] && kill "$VG" 2>/dev/null; wait' EXIT
trap 'echo "instr: interrupted" >&2; exit 130' INT TERM

# one LABEL BIN DUR K: one run; writes OUT/LABEL-DUR-K.{json,cg,log}
one() {
  local label=$1 bin=$2 dur=$3 k=$4 base="$out/$1-$3-$4" i
  local -a extra=("${env_a[@]}")
  [ "$label" = B ] && extra=("${env_b[@]}")
  env "${extra[@]}" valgrind --tool=callgrind --callgrind-out-file="$base.cg" \
    "$bin" --workers 2 --listen "127.0.0.1:$port" --log-level warn \
    >"$base.log" 2>&1 &
  VG=$!
  wait_healthy "$port" 60 || { echo "instr: $label did not start" >&2; exit 2; }
  "$bench" fanout --channels 1 --subs "$subs" --size 100 --threads 1 \
    --rate "$rate" --url "ws://127.0.0.1:$port/ws" --duration "$dur" \
    --warmup 1 --quiet --json "$base.json" >>"$base.log" 2>&1
  kill -TERM "$VG"; wait "$VG"; VG=
}

echo "instr: A = ${ENV_A:+$ENV_A }$herald_a, B = ${ENV_B:+$ENV_B }$herald_b; $runs runs of $subs subscribers at $rate/s, $short s and $long s; $out" >&2
for k in $(seq "$runs"); do
  for label in A B; do
    if [ "$label" = A ]; then bin=$herald_a; else bin=$herald_b; fi
    one "$label" "$bin" "$short" "$k"
    one "$label" "$bin" "$long" "$k"
  done
done

"$py" - "$out" "$runs" "$short" "$long" "$herald_a" "$herald_b" "$subs" "$rate" \
  "${ENV_A:-}" "${ENV_B:-}" <<'EOF' | tee "$out/summary.md"
import json, re, statistics, sys
out, runs, short, long_, bin_a, bin_b, subs, rate, env_a, env_b = sys.argv[1:11]
bad = 0

def total(base):
    with open(base + ".cg") as f:
        return int(re.search(r"^summary: (\d+)", f.read(), re.M).group(1))

def delivered(base):
    global bad
    r = json.load(open(base + ".json"))
    if r["deliveries_total"] != r["expected_deliveries"] or r["gaps"] or r["duplicates"]:
        bad = 1
    return r["deliveries_total"]

print("# instructions per delivery (callgrind): %s subscribers at %s pub/s, %s s vs %s s\n"
      % (subs, rate, short, long_))
print("- A: %s%s\n- B: %s%s\n" % (env_a + " " if env_a else "", bin_a,
                                  env_b + " " if env_b else "", bin_b))
print("| run | A | B | B/A |")
print("|---|---|---|---|")
per = {"A": [], "B": []}
for k in range(1, int(runs) + 1):
    row = []
    for label in ("A", "B"):
        s, l = "%s/%s-%s-%d" % (out, label, short, k), "%s/%s-%s-%d" % (out, label, long_, k)
        v = (total(l) - total(s)) / (delivered(l) - delivered(s))
        per[label].append(v)
        row.append(v)
    print("| %d | %.0f | %.0f | %.3f |" % (k, row[0], row[1], row[1] / row[0]))
ma, mb = statistics.median(per["A"]), statistics.median(per["B"])
print("| median | %.0f | %.0f | **%.3f** |" % (ma, mb, mb / ma))
sys.exit(bad)
EOF
exit "${PIPESTATUS[0]}"

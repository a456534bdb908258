#!/bin/sh
# Runs one libFuzzer harness for a set time on its committed corpus, for
# `make fuzz` and for the CTest tests of label fuzz (tests/fuzz/README.md).
#
#   run.sh [--fresh] HARNESS CORPUS WORK SECONDS [libFuzzer options...]
#
# CORPUS is the committed corpus (tests/fuzz/corpus/<harness>/); it is only
# read. New inputs go to WORK/corpus/<harness>/ and crash, leak and timeout
# inputs to WORK/artifacts/<harness>/ (WORK is in the ignored build
# directory). --fresh empties WORK/corpus/<harness>/ first, so a CTest run
# takes the same time whatever earlier runs found. The exit status is
# libFuzzer's: 0 when nothing was found, non-zero on a crash, a leak, a
# timeout or any sanitizer report.
set -eu
fresh=0
if [ "${1:-}" = --fresh ]; then fresh=1; shift; fi
if [ $# -lt 4 ]; then
  echo "usage: $0 [--fresh] HARNESS CORPUS WORK SECONDS [options...]" >&2
  exit 2
fi
harness=$1 corpus=$2 work=$3 seconds=$4
shift 4
name=$(basename "$harness")
[ -d "$corpus" ] || { echo "$0: no corpus directory $corpus" >&2; exit 2; }
[ "$fresh" = 1 ] && rm -rf "$work/corpus/$name"
mkdir -p "$work/corpus/$name" "$work/artifacts/$name"
# The suppressions name functions, so the reports need symbols: without
# llvm-symbolizer (Debian package llvm) a packaged library's known leak
# would be reported as a finding.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ]; then
  sym=$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)
  [ -n "$sym" ] || { echo "$0: no llvm-symbolizer (Debian package llvm)" >&2; exit 2; }
  export ASAN_SYMBOLIZER_PATH="$sym"
fi
# Leaks are checked by libFuzzer after each input that allocated more than
# it freed (minus the packaged libraries' own, lsan.supp); UBSan reports
# abort (-fno-sanitize-recover) with a stack.
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(dirname "$0")/lsan.supp}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
exec "$harness" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/$name/" "$@" \
  "$work/corpus/$name" "$corpus"

#!/bin/sh
# Shows that tests/fuzz/run.sh fails when a harness hits a heap overflow, a
# leak or undefined behaviour, and passes otherwise (CTest fuzz.selftest).
#   selftest.sh SELFTEST_HARNESS RUN_SH WORK
# Each case is a one-file corpus replayed without fuzzing (-runs=0), so the
# outcome does not depend on what the fuzzer would try next.
set -u
harness=$1 run=$2 work=$3
fails=0
check() {   # case, expected exit (0 or "nonzero"), expected report text
  dir=$work/$1
  rm -rf "$dir"
  mkdir -p "$dir/corpus"
  printf '%s' "$1" >"$dir/corpus/input"
  "$run" --fresh "$harness" "$dir/corpus" "$dir/work" 10 -runs=0 \
    >"$dir/log" 2>&1
  rc=$?
  if [ "$2" = 0 ] && [ $rc -ne 0 ]; then
    echo "selftest: '$1' should pass, exit $rc:"; cat "$dir/log"; fails=1
  elif [ "$2" != 0 ] && [ $rc -eq 0 ]; then
    echo "selftest: '$1' should fail, exit 0:"; cat "$dir/log"; fails=1
  elif [ -n "$3" ] && ! grep -q "$3" "$dir/log"; then
    echo "selftest: '$1' log lacks '$3':"; cat "$dir/log"; fails=1
  else
    echo "selftest: '$1' exit $rc as expected"
  fi
}
check overflow nonzero "AddressSanitizer: heap-buffer-overflow"
check leak nonzero "LeakSanitizer: detected memory leaks"
check ub nonzero "runtime error: signed integer overflow"
check fine 0 ""
exit $fails

#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) in build-fuzz/ with clang, ASan and UBSan, and runs
# each one on its corpus. Exit status is non-zero when any target crashes, leaks, times out or
# runs out of memory; the input is kept in build-fuzz/fuzz-artifacts/.
#
#   OKLOG_FUZZ_SECONDS=N   seconds per target (default 5): the short CI run
#   OKLOG_FUZZ_RUNS=N      a number of executions per target instead (e.g. 10000000 by hand)
#   OKLOG_FUZZ_TARGETS="a b"  only these targets (names without the fuzz_ prefix)
#   OKLOG_FUZZ_JOBS=N      build parallelism (default: nproc)
#   OKLOG_FUZZ_SEED=N      libFuzzer's seed (default 1, so a CI run is repeatable; 0: random)
# New inputs the fuzzers find go to build-fuzz/fuzz-corpus/<target>/, never into the source
# tree; the seeds are tests/fuzz/corpus/<target>/ plus make_corpus's fresh output.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
out=build-fuzz
jobs=${OKLOG_FUZZ_JOBS:-$(nproc)}
# -O1 with line tables only: the usual fuzzing build (fast to compile, symbolized stacks); the
# CI budget is minutes.
CC=clang CXX=clang++ cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_C_FLAGS_FUZZ="-O1 -gline-tables-only" \
  -DCMAKE_CXX_FLAGS_FUZZ="-O1 -gline-tables-only" -DOKLOG_FUZZ=ON -DOKLOG_BUILD_TESTS=OFF >/dev/null
cmake --build "$out" -j"$jobs" --target fuzz_all

targets=${OKLOG_FUZZ_TARGETS:-$(cd tests/fuzz && ls fuzz_*.cpp | sed 's/^fuzz_//; s/\.cpp$//')}
seconds=${OKLOG_FUZZ_SECONDS:-5}
limit=(-max_total_time="$seconds")
[ -n "${OKLOG_FUZZ_RUNS:-}" ] && limit=(-runs="$OKLOG_FUZZ_RUNS")

rm -rf "$out/fuzz-seeds"
"$out/tests/fuzz/make_corpus" "$out/fuzz-seeds"
mkdir -p "$out/fuzz-artifacts" "$out/fuzz-logs"
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

status=0
rows=()
for t in $targets; do
  corpus="$out/fuzz-corpus/$t"
  mkdir -p "$corpus" "$out/fuzz-seeds/$t"
  log="$out/fuzz-logs/$t.log"
  rc=0
  nice -n 10 "$out/tests/fuzz/fuzz_$t" "${limit[@]}" -seed="${OKLOG_FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$src/$out/fuzz-artifacts/$t-" "$corpus" "tests/fuzz/corpus/$t" "$out/fuzz-seeds/$t" \
    >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  result=ok
  if [ "$rc" -ne 0 ]; then
    status=1
    if grep -q "ERROR: LeakSanitizer" "$log"; then result=leak
    elif grep -q "ERROR: libFuzzer: timeout" "$log"; then result=timeout
    elif grep -q "out-of-memory" "$log"; then result=oom
    else result=crash; fi
    echo "fuzz_$t: $result (exit $rc); log $log:" >&2
    grep -m 20 -E "ERROR|runtime error|FUZZ_CHECK|^    #[0-9] " "$log" >&2 || tail -20 "$log" >&2
  fi
  rows+=("$(printf '%-16s %12s %10s  %s' "$t" "${execs:-?}" "${rate:-?}" "$result")")
done

printf '%-16s %12s %10s  %s\n' target execs exec/s result
printf '%s\n' "${rows[@]}"
exit $status

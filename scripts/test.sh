#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite: a normal build, then an
# ASan+UBSan build, then a short run of every libFuzzer target (scripts/fuzz.sh). Exit status is
# non-zero when any test fails or any fuzz target crashes. OKLOG_SKIP_SANITIZE=1 skips the ASan
# stage, OKLOG_SKIP_FUZZ=1 the fuzz stage.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs" --timeout 600 -LE chaos)
# The chaos short set (tools/chaos) alone on the machine: its figures are timings under faults.
(cd build && ctest --output-on-failure -L chaos)
if [ "${OKLOG_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DOKLOG_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs"
  # The sanitizer run leaves out tests labelled `slow` (the 1,000,000-record cluster run) and
  # `chaos` (timed fault scenarios, which the normal build has just run).
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
     OKLOG_SANITIZED=1 ctest --output-on-failure -j"$jobs" --timeout 900 -LE 'slow|chaos')
fi
# A few seconds per fuzz target on its seed corpus (clang, ASan+UBSan, build-fuzz/); long runs
# are by hand (tests/fuzz/README.md).
if [ "${OKLOG_SKIP_FUZZ:-0}" != 1 ]; then
  ./scripts/fuzz.sh
fi

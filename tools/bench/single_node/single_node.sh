#!/usr/bin/env bash
# Builds oklog and the single-node benchmark in Release mode and runs it (issue 2, "Benchmark").
#
#   tools/bench/single_node/single_node.sh [bench flags...]
#     e.g. tools/bench/single_node/single_node.sh --records=2000000 --runs=5 --marker-seconds=10
#
# Environment: BUILD_DIR (default build-bench in the repository root), BENCH_TMP (default /tmp;
# keep it on the real disk, not tmpfs, so the dd probe and the node measure the same device).
# Needs: cmake, ninja, dd, grep, rg (ripgrep). Exit status: the benchmark's (0 = ran cleanly;
# a missed target is not a failure, a wrong count or a bad node exit is).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
build="${BUILD_DIR:-$root/build-bench}"

for tool in dd grep rg; do
  command -v "$tool" >/dev/null || { echo "single_node.sh: $tool is missing" >&2; exit 2; }
done
"$root/tools/bench/build_release.sh" "$build" oklog oklog_bench_single

# Bound the whole run: the benchmark bounds each step itself; this is the backstop.
exec timeout --signal=INT --kill-after=30 900 \
  "$build/tools/bench/single_node/oklog_bench_single" --oklog="$build/oklog" --tmp="${BENCH_TMP:-/tmp}" "$@"

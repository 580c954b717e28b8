#!/usr/bin/env bash
# Builds oklog and the cluster benchmark in Release mode and runs it (issue 4, "Benchmark").
#   tools/bench/clusterbench/cluster_bench.sh [--quick] [bench flags...]   (BUILD_DIR, BENCH_TMP as single_node.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)" && build="${BUILD_DIR:-$root/build-bench}"
"$root/tools/bench/build_release.sh" "$build" oklog oklog_bench_cluster
exec timeout --signal=INT --kill-after=30 600 "$build/tools/bench/clusterbench/oklog_bench_cluster" --oklog="$build/oklog" --tmp="${BENCH_TMP:-/tmp}" "$@"

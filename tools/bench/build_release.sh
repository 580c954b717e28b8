#!/usr/bin/env bash
# Builds the given targets in Release mode (at -O2) into BUILD_DIR, for the benchmark scripts.
#
#   tools/bench/build_release.sh BUILD_DIR TARGET...
#
# Prints the build's errors and exits 2 when it fails; silent otherwise.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$1"
shift

for tool in cmake ninja; do
  command -v "$tool" >/dev/null || { echo "build_release.sh: $tool is missing" >&2; exit 2; }
done

# Release, but at -O2: GCC 12's -O3 raises a false -Wrestrict (an error under -Werror) in
# std::string code inlined into src/common/address.cpp.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
         -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" &&
       cmake --build "$build" -j2 --target "$@"; } >"$log" 2>&1; then
  grep -E "error|FAILED" "$log" | head -20 >&2
  echo "build_release.sh: build failed" >&2
  exit 2
fi

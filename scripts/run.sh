#!/usr/bin/env bash
# Installs what is missing, builds, and starts a single oklog node with embedded defaults.
# Extra arguments are passed to `oklog ingeststore`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target oklog
exec ./build/oklog ingeststore "$@"

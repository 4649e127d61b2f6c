#!/usr/bin/env bash
# Configures and builds into build/ (reused between runs; ccache keeps rebuilds cheap).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPIPPY_WERROR=ON "$@" >/dev/null
cmake --build build -j "$jobs"

#!/usr/bin/env bash
# Configures and builds into $BUILD_DIR (default build/; reused between runs, ccache keeps rebuilds cheap).
# Extra arguments go to CMake's configure step. libtorch is the torch wheel of the environment that
# scripts/setup.sh makes (found through scripts/pyenv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
jobs=$(nproc)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPIPPY_WERROR=ON "$@" >/dev/null
cmake --build "$build" -j "$jobs"

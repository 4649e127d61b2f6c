#!/usr/bin/env bash
# Quick start, second command: install what is missing, build, and pass every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" --timeout 600

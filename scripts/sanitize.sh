#!/usr/bin/env bash
# The torch-free build (core, traces, actors, simulator, tools, and the Qt viewer where Qt is installed and
# the compiler builds its tests) with AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer, and
# its CTest suite: any sanitizer report fails the test that made it (UBSan does not recover, LSan runs at
# every process's exit). What is left out of code that is not ours, each entry with why:
# scripts/ubsan.ignorelist (clang) and scripts/lsan.supp (leaks in libraries we link; none so far).
# Env: BUILD_DIR (default build-asan), CXX (default clang++; g++ works too, without the ignore list, so
#      its -fsanitize=null is off), JOBS (default nproc).
# Extra arguments go to ctest (e.g. -L core, -R schedule).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD_DIR:-build-asan}
jobs=${JOBS:-$(nproc)}
start=$SECONDS
cxx=${CXX:-clang++}
# -O1 with line tables only (enough for the reports' file:line) keeps the build short; a Debug build
# keeps assertions on.
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
opt="-O1 -g1"
if [[ $cxx == *clang* ]]; then
  flags+=" -Wno-unknown-warning-option -fsanitize-ignorelist=$root/scripts/ubsan.ignorelist"
  opt="-O1 -gline-tables-only"
else
  flags+=" -fno-sanitize=null" # gcc has no ignore list: CAF's null tuple<> (scripts/ubsan.ignorelist)
fi
gui=OFF
pkg-config --exists Qt6Widgets 2>/dev/null && gui=ON
# tests/gui captures structured bindings in lambdas (C++20), which clang compiles from version 16 on:
# with an older clang (bookworm's is 14) the viewer is left out; CXX=g++ builds it.
if [[ $cxx == *clang* ]] && (($("$cxx" -dumpversion | cut -d. -f1) < 16)); then
  gui=OFF
fi
CXX=$cxx cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="$opt" \
  -DCMAKE_CXX_FLAGS="$flags" -DPIPPY_BUILD_TORCH=OFF -DPIPPY_BUILD_CUDA=OFF -DPIPPY_BUILD_BENCH=OFF \
  -DPIPPY_BUILD_GUI=$gui -DPIPPY_BUILD_TESTS=ON >/dev/null
cmake --build "$build" -j "$jobs"
echo "sanitize: built in $((SECONDS - start)) s (GUI $gui)"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/scripts/lsan.supp:print_suppressions=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
rc=0
ctest --output-on-failure -j "$jobs" --timeout 900 "$@" || rc=$?
echo "sanitize: $((SECONDS - start)) s in all, ctest exit $rc"
exit "$rc"

#!/usr/bin/env bash
# The CMake package end to end: installs pippy's build into a fresh prefix, checks the installed
# executables run (pippy split finds pippy-split beside pippy), then configures and builds this folder
# (find_package(pippy), pippy::runtime) against the install, with Ninja and pippy's compiler, and runs it.
# usage: package_test.sh CMAKE BUILD_DIR WORK_DIR CXX [extra cmake arguments for the app]
set -euo pipefail
cmake=$1 build=$2 work=$3 cxx=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
prefix=$work/prefix
rm -rf "$work"
mkdir -p "$work"

step() { echo "== $*"; }
step "install to $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"
for f in lib/cmake/pippy/pippyConfig.cmake lib/cmake/pippy/pippyConfigVersion.cmake \
         lib/cmake/pippy/pippyTargets.cmake include/pippy/runtime/microbatch.hpp bin/pippy; do
  [[ -e $prefix/$f ]] || { echo "error: the install has no $f" >&2; exit 1; }
done
"$prefix/bin/pippy" --help >/dev/null
if [[ -e $prefix/bin/pippy-split ]]; then
  "$prefix/bin/pippy" split --help >/dev/null # pippy-split found beside pippy, libtorch through its RPATH
fi
if [[ -e $prefix/bin/pippy-train ]]; then
  "$prefix/bin/pippy-train" --help >/dev/null
fi

step "configure and build tests/package against it"
"$cmake" -S "$here" -B "$work/app" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE= \
  -DCMAKE_CXX_FLAGS=-O0 -DCMAKE_PREFIX_PATH="$prefix" "$@" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
"$cmake" --build "$work/app" -j2

step "run"
out=$("$work/app/app") || { echo "$out"; echo "error: app failed" >&2; exit 1; }
echo "$out"
expected="microbatches 3 3 2 2 last 8; schedule 1f1b ranks 2 actions 18 with communication 34"
[[ $out == "$expected" ]] || { echo "error: expected: $expected" >&2; exit 1; }
rm -rf "$prefix" # 450 MB, mostly static libraries with debug info
echo "package test passed"

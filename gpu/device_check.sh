#!/usr/bin/env bash
# The GPU checks of a machine with a GPU, in one script (run from the repository root):
#   bash gpu/device_check.sh [configure|build|test|bench|all]   (default: all)
# Configures build-cuda with PIPPY_BUILD_CUDA=ON against the CUDA libtorch and NCCL of the python that has
# PyTorch 2.11 (PYTHON, default python3), builds the GPU targets and what the tests and bench need, runs the
# GPU tests and the throughput bench. Logs go to $OUT (the device tool's output folder) when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-all}
py=${PYTHON:-python3}
build=${BUILD:-build-cuda}
out=${OUT:-$build/device-logs}
mkdir -p "$out"
jobs=$(nproc)

if [[ $step == configure || $step == all ]]; then
  nvidia-smi | tee "$out/nvidia-smi.txt" || true
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' \
    | tee "$out/torch.txt"
  # CMake takes Torch_DIR and the wheel's NCCL from that python (PIPPY_PYTHON).
  cmake -S . -B "$build" -DPIPPY_BUILD_CUDA=ON -DPIPPY_BUILD_GUI=OFF -DCMAKE_BUILD_TYPE=Release \
    -DPIPPY_PYTHON="$(command -v "$py")" 2>&1 | tee "$out/configure.txt"
fi
if [[ $step == build || $step == all ]]; then
  cmake --build "$build" -j"$jobs" --target pippy_gpu test_gpu gpu_bench pippy 2>&1 | tail -50 | tee "$out/build.txt"
fi
if [[ $step == test || $step == all ]]; then
  (cd "$build" && ctest -L gpu --output-on-failure 2>&1) | tee "$out/ctest-gpu.txt"
  "$build/tests/gpu/test_gpu" -s 2>&1 | tail -40 > "$out/test_gpu-verbose.txt" || true
fi
if [[ $step == bench || $step == all ]]; then
  PYTHON=$py bench/gpu_bench.sh "$build" 2>&1 | tee "$out/gpu_bench.txt"
fi

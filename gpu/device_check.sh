#!/usr/bin/env bash
# Everything issue 7 asks of a machine with a GPU, in one script (run from the repository root):
#   bash gpu/device_check.sh [configure|build|test|bench|all]   (default: all)
# Finds the CUDA libtorch and NCCL of the python that has PyTorch (PYTHON, default python3), configures
# build-cuda with PIPPY_BUILD_CUDA=ON, builds the GPU targets and what the tests and bench need, runs the
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
  sp=$("$py" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' \
    | tee "$out/torch.txt"
  nccl_root=""
  [[ -d $sp/nvidia/nccl ]] && nccl_root="-DNCCL_ROOT=$sp/nvidia/nccl"
  cuda_root=""
  [[ -d /usr/local/cuda ]] && cuda_root="-DCUDAToolkit_ROOT=/usr/local/cuda"
  cmake -S . -B "$build" -DPIPPY_BUILD_CUDA=ON -DPIPPY_BUILD_GUI=OFF -DCMAKE_BUILD_TYPE=Release \
    -DTorch_DIR="$sp/torch/share/cmake/Torch" $nccl_root $cuda_root 2>&1 | tee "$out/configure.txt"
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

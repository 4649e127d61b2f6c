#!/usr/bin/env bash
# infer_bench.sh BUILD_DIR [OUT_DIR]: pipelined inference against the unsplit model, and the memory of an
# inference step against a training step, side by side (farm-bench --vs: A and B in turn, ratios pair by pair).
# The model: transformers' GPT-2 from tests/peers/hf_models.py (8 blocks, hidden 256, random weights) traced to
# TorchScript; a batch of 64 sequences of 128 tokens in 8 micro-batches, 20 steps of pippy-train, 1 thread
# per process, on 2 Gloo processes (1f1b's forwards) against 1 process (the unsplit file).
#   1. time:   --eval on 2 processes  vs  --eval unsplit          (wall: throughput ratio)
#   2. memory: --eval on 2 processes  vs  training on 2 processes (peak: the largest rank process)
set -euo pipefail
build=$(cd "$1" && pwd)
out=${2:-$(mktemp -d "${TMPDIR:-/tmp}/infer_bench.XXXXXX")}
mkdir -p "$out"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=$(grep '^PIPPY_PYTHON:' "$build/CMakeCache.txt" | cut -d= -f2)
"$python" "$here/../tests/peers/hf_models.py" --model gpt2 --out "$out" --batch 64 --microbatches 8 --seq 128 \
  --steps 1 --layers 8 --hidden 256 >/dev/null
pippy=$build/tools/pippy train=$build/examples/pippy-train
# Synthetic token ids (the file's vocabulary is 64), the same seeded batches in every run.
common="--model $out/model.pt --input 64x128:int64:64 --microbatches 8 --steps 20 --threads 1"
echo "== inference throughput: 2 processes (A) vs unsplit (B)"
farm-bench -n 5 --timeout 1200 --vs "$pippy run --nproc 1 -- $train $common --eval" \
  -- $pippy run --nproc 2 -- $train $common --eval
echo "== peak memory of the largest rank: inference (A) vs a training step (B), 2 processes"
farm-bench -n 5 --timeout 1200 --vs "$pippy run --nproc 2 -- $train $common" \
  -- $pippy run --nproc 2 -- $train $common --eval

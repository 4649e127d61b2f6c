#!/usr/bin/env bash
# GPU throughput, side by side in one run on the same GPU (issue 7): the GPT-style example
#   1. unsplit on the GPU (the ceiling, tokens/s);
#   2. split into stages, all on this GPU, trained through the stage actors on the GPU backend
#      (bench/gpu_bench.cpp) and by torch.distributed.pipelining (bench/gpu_pipelining.py), same model,
#      sizes, stage split, schedule and micro-batches, for each schedule in SCHEDULES;
#   3. with NPROC=2 (two GPUs): 1f1b across 2 processes, NCCL (pippy run vs torchrun).
# Prints the JSON lines and a table of ratios. Float32 (no TF32) unless TF32=1.
# usage: bench/gpu_bench.sh BUILD_DIR
#   env: PYTHON (a python with PyTorch >= 2.4 + CUDA; default python3), SCHEDULES ("interleaved-1f1b
#        interleaved-zb"), V (stages per rank, 4), MICROBATCHES (8), BATCH (32), SEQ (256), N_LAYER (8),
#        N_EMBD (512), N_HEAD (8), VOCAB (8192), STEPS (20), WARMUP (5), NPROC (1)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: bench/gpu_bench.sh BUILD_DIR}
py=${PYTHON:-python3}
bench=$build/gpu_bench
pippy=$build/tools/pippy
schedules=${SCHEDULES:-"interleaved-1f1b interleaved-zb"}
V=${V:-4}
common=(--microbatches "${MICROBATCHES:-8}" --batch "${BATCH:-32}" --seq "${SEQ:-256}" --n-layer "${N_LAYER:-8}"
        --n-embd "${N_EMBD:-512}" --n-head "${N_HEAD:-8}" --vocab "${VOCAB:-8192}" --steps "${STEPS:-20}"
        --warmup "${WARMUP:-5}")
[[ ${TF32:-0} == 1 ]] && common+=(--tf32)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "nccl", torch.cuda.nccl.version())'

"$bench" --mode unsplit "${common[@]}" | tee -a "$out"
for s in $schedules; do
  v=$V; [[ $s == zbv ]] && v=2
  "$bench" --mode pipeline --schedule "$s" --ranks 1 --stages-per-rank "$v" "${common[@]}" | tee -a "$out"
  "$py" bench/gpu_pipelining.py --schedule "$s" --stages-per-rank "$v" "${common[@]}" | tee -a "$out"
done
if [[ ${NPROC:-1} -gt 1 ]]; then
  "$pippy" run --nproc "$NPROC" -- "$bench" --mode pipeline --schedule 1f1b --ranks "$NPROC" "${common[@]}" | tee -a "$out"
  "$py" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" bench/gpu_pipelining.py --schedule 1f1b \
    "${common[@]}" | tee -a "$out"
fi

"$py" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ceiling = next((r["tokens_per_s"] for r in rows if r["impl"] == "unsplit"), None)
print(f"\n{'impl':30} {'schedule':18} {'R':>2} {'S':>2} {'step ms':>9} {'tokens/s':>11} {'/unsplit':>9} {'/torch':>7} {'peak MB':>8}")
for r in rows:
    torch_tps = next((t["tokens_per_s"] for t in rows if t["impl"] == "torch.distributed.pipelining"
                      and t["schedule"] == r["schedule"] and t["ranks"] == r["ranks"]), None)
    vs_torch = f"{r['tokens_per_s'] / torch_tps:7.2f}" if torch_tps and r["impl"] == "pippy-cpp" else "      -"
    vs_ceiling = f"{r['tokens_per_s'] / ceiling:9.2f}" if ceiling else "        -"
    print(f"{r['impl']:30} {r['schedule']:18} {r['ranks']:2} {r['stages']:2} {r['step_ms']:9.2f} "
          f"{r['tokens_per_s']:11.0f} {vs_ceiling} {vs_torch} {r['peak_allocated_mb']:8.0f}")
PY

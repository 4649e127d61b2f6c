#!/usr/bin/env bash
# The real backend's benchmark, everything side by side in one run (issue 4):
#   1. per-action overhead with tiny stages (runtime_bench, engine and actors, 1 and 2 ranks);
#   2. a 2-stage pipeline (2 processes, Gloo, 1f1b) vs the ideal = the simulator's prediction from the
#      per-stage costs measured in that same run;
#   3. the same model and batch without a pipeline (one process, 1 and 2 threads), ours and PyTorch's
#      (the project's torch 2.11; torch.distributed.pipelining side by side: bench/peer_bench.sh).
# usage: bench/runtime_bench.sh [BUILD_DIR]   (env: STEPS, BATCH, MICROBATCHES)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${STEPS:-12} batch=${BATCH:-128} mbs=${MICROBATCHES:-8}
pippy=$build/tools/pippy mynetwork=$build/examples/mynetwork bench=$build/runtime/runtime_bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2054 # the commas are one argument's
model=(--in-dim 512 --dims 512,512,512,512 --batch "$batch" --steps "$steps" --seed 1)
step_us() { sed -n 's/^measured step_us \([0-9.e+-]*\).*/\1/p'; }

echo "## 1. per-action overhead (tiny stages)"
"$bench" --ranks 1 --microbatches 64 --steps 20
"$bench" --ranks 2 --microbatches 16 --steps 50

echo "## 2-3. MLP 512 -> 4 x 512 -> 10, batch $batch, $mbs micro-batches, $steps steps (steady = after step 1)"
nopipe1=$("$mynetwork" "${model[@]}" --threads 1 | step_us)
nopipe2=$("$mynetwork" "${model[@]}" --threads 2 | step_us)
declare -A measured ideal
for rt in actors engine; do
  measured[$rt]=$("$pippy" run --nproc 2 -- "$mynetwork" "${model[@]}" --schedule 1f1b --microbatches "$mbs" \
    --runtime $rt --profile "$tmp/costs-$rt.json" | step_us)
  ideal[$rt]=$("$pippy" sim --schedule 1f1b --ranks 2 --microbatches "$mbs" --cost-file "$tmp/costs-$rt.json" --json |
    sed -n 's/.*"makespan_us": \([0-9.e+-]*\).*/\1/p' | head -1)
done
py=$("$(dirname "$0")"/../scripts/pyenv.sh)/bin/python
plain() { "$py" bench/runtime_plain.py --in-dim 512 --dims 512,512,512,512 --batch "$batch" --steps "$steps" \
  --threads "$1" 2>/dev/null | sed -n 's/^step_us \([0-9]*\).*/\1/p'; }
plain1=$(plain 1)
plain2=$(plain 2)
awk -v a="${measured[actors]}" -v ia="${ideal[actors]}" -v e="${measured[engine]}" -v ie="${ideal[engine]}" \
    -v n1="$nopipe1" -v n2="$nopipe2" -v p1="$plain1" -v p2="$plain2" 'BEGIN {
  printf "| run | step ms | vs ideal | vs pippy-cpp actors |\n|---|---|---|---|\n"
  printf "| pippy-cpp 2 processes, 1f1b, actors | %.1f | %.2f | 1.00 |\n", a/1000, a/ia
  printf "| ideal for that run (simulated from its measured costs) | %.1f | 1.00 | %.2f |\n", ia/1000, ia/a
  printf "| pippy-cpp 2 processes, 1f1b, engine | %.1f | %.2f (own ideal %.1f ms) | %.2f |\n", e/1000, e/ie, ie/1000, e/a
  printf "| pippy-cpp no pipeline, 1 thread | %.1f | | %.2f |\n", n1/1000, n1/a
  printf "| pippy-cpp no pipeline, 2 threads | %.1f | | %.2f |\n", n2/1000, n2/a
  printf "| PyTorch plain, 1 thread | %.1f | | %.2f |\n", p1/1000, p1/a
  printf "| PyTorch plain, 2 threads | %.1f | | %.2f |\n", p2/1000, p2/a
}'

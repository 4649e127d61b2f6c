#!/usr/bin/env bash
# profile_gpt.sh PIPPY GPT PYTHON: the profile of a model whose stages the compiler traced at the
# micro-batch's shape. GPT (6 blocks, batch 32 in 4 micro-batches of 8 rows) trains 1F1B on 2 processes
# with --profile; the cost file must match the run's trace (check_profile.py) and time each of the 6
# layers at micro-batches of 2, 4, 16 and 32 rows too (counts 16, 8, 2 and 1): the layers are traced
# again at each of those shapes, which a fixed-shape graph cannot run otherwise. The model is widened
# (embedding 64, sequence 32) so that rows, not each op's fixed cost, make most of a layer's time: at the
# default width a GPT layer at 4 rows takes 0.92 of its time at 8 (in the runs' traces too), too close
# for "more rows take longer" to hold against a loaded machine's noise; widened, 0.74.
set -euo pipefail
pippy=$1 gpt=$2 py=$3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
steps=3
"$pippy" run --nproc 2 -- "$gpt" --schedule 1f1b --microbatches 4 --batch 32 --embd 64 --seq 32 --steps $steps \
  --timeout 60 --trace "$tmp/trace.json" --profile "$tmp/costs.json" | tee "$tmp/out.txt"
[[ $(grep -c '^step [0-9]* loss ' "$tmp/out.txt") -eq $steps ]] || { echo "FAIL: expected $steps loss lines"; exit 1; }
"$py" "$here/check_profile.py" "$tmp/trace.json" "$tmp/costs.json" --steps $steps --ranks 2 --microbatch-rows 8 \
  --layer-sizes 2,4,16,32

#!/usr/bin/env bash
# hf_gpt2.sh PIPPY SCRIPTED_LM PYTHON NPROC SCHEDULE [SCRIPTED_LM ARGS...]
# A model nobody here wrote: hf_gpt2.py builds Hugging Face's GPT2LMHeadModel (random weights), traces it to
# TorchScript and writes the data in a temporary directory, and prints the unsplit eager Python losses.
# compare_losses.sh then trains the traced file with scripted-lm unsplit (1 process) and pipelined on
# NPROC processes: the three must print the same `step N loss X` lines to 1e-5 relative.
set -euo pipefail
pippy=$1 lm=$2 python=$3 nproc=$4 schedule=$5
shift 5
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/hf_gpt2.XXXXXX")
trap 'rm -rf "$dir"' EXIT
# compare_losses.sh runs --steps 3 --microbatches 6: 12 sequences a step, traced at micro-batch 2.
py=$("$python" "$here/hf_gpt2.py" --out "$dir" --batch 12 --microbatches 6 --steps 3 | grep '^step ')
echo "Python (transformers, eager, unsplit):"; echo "$py"
if ! out=$("$here/../runtime/compare_losses.sh" "$pippy" "$lm" "$nproc" "$schedule" \
             --model "$dir/model.pt" --data "$dir/batches.pt" "$@" 2>&1); then
  echo "$out"; exit 1
fi
echo "$out"
sed -n '/^unsplit:$/,/^step 2 /p' <<<"$out" | grep '^step ' >"$dir/unsplit.txt"
echo "$py" >"$dir/python.txt"
"$python" "$here/compare_runs.py" --losses "$dir/python.txt" "$dir/unsplit.txt"

#!/usr/bin/env bash
# hf_models.sh PIPPY PIPPY_TRAIN PYTHON MODEL NPROC SCHEDULE [--varlen] [PIPPY_TRAIN ARGS...]
# The models of PiPPy's own examples (transformers' BERT, GPT-2, T5, LLaMA; random weights): hf_models.py
# traces MODEL to a shape-generic TorchScript file in a temporary directory, writes the data and prints the
# eager Python model's losses. compare_losses.sh then trains the file with pippy-train unsplit (1 process)
# and pipelined on NPROC processes, 6 micro-batches of a batch of 8 (2, 2, 1, 1, 1, 1 rows: uneven, and
# not the traced 2): all three must print the same `step N loss X` to 1e-5 relative.
# --varlen: the steps' sequences are cut to 16, 11 and 7 tokens (lengths that change between steps);
# then only unsplit and pipelined are compared (Python trained on the full length).
set -euo pipefail
pippy=$1 train=$2 python=$3 model=$4 nproc=$5 schedule=$6
shift 6
varlen=0
if [[ ${1:-} == --varlen ]]; then varlen=1; shift; fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/hf_models.XXXXXX")
trap 'rm -rf "$dir"' EXIT
py=$("$python" "$here/hf_models.py" --model "$model" --out "$dir" --batch 8 --microbatches 4 --steps 3 | grep '^step ')
data="$dir/data.pt"
if ((varlen)); then
  "$python" - "$dir" <<'PY'
import sys, torch
d = torch.load(f"{sys.argv[1]}/data.pt")
out = {k: v[:, : (16, 11, 7)[int(k.rsplit(".", 1)[1])]].contiguous() for k, v in d.items()}
torch.save(out, f"{sys.argv[1]}/data_varlen.pt")
PY
  data="$dir/data_varlen.pt"
fi
echo "Python (transformers, eager, unsplit, whole batch):"; echo "$py"
if ! out=$("$here/../runtime/compare_losses.sh" "$pippy" "$train" "$nproc" "$schedule" \
             --model "$dir/model.pt" --data "$data" "$@" 2>&1); then
  echo "$out"; exit 1
fi
echo "$out"
((varlen)) && exit 0
sed -n '/^unsplit:$/,/^step 2 /p' <<<"$out" | grep '^step ' >"$dir/unsplit.txt"
echo "$py" >"$dir/python.txt"
"$python" "$here/compare_runs.py" --losses "$dir/python.txt" "$dir/unsplit.txt"

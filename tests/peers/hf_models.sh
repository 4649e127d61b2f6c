#!/usr/bin/env bash
# hf_models.sh PIPPY PIPPY_TRAIN PYTHON MODEL NPROC SCHEDULE [--varlen] [PIPPY_TRAIN ARGS...]
# The models of PiPPy's own examples (transformers' BERT, GPT-2, T5, LLaMA; random weights): hf_models.py
# traces MODEL to a shape-generic TorchScript file in a temporary directory, writes the data and prints the
# eager Python model's losses. compare_losses.sh then trains the file with pippy-train unsplit (1 process)
# and pipelined on NPROC processes, 6 micro-batches of a batch of 8 (2, 2, 1, 1, 1, 1 rows: uneven, and
# not the traced 2): all three must print the same `step N loss X` to 1e-5 relative.
# --varlen: the steps' sequences are cut to 16, 11 and 7 tokens (lengths that change between steps);
# then only unsplit and pipelined are compared (Python trained on the full length).
# --eval: pipelined inference instead (pippy-train --eval, 4 micro-batches of 2 rows): the whole batch's
# output must equal the eager model's logits (reference.pt) to 1e-5 relative.
set -euo pipefail
pippy=$1 train=$2 python=$3 model=$4 nproc=$5 schedule=$6
shift 6
varlen=0 eval=0
if [[ ${1:-} == --varlen ]]; then varlen=1; shift; fi
if [[ ${1:-} == --eval ]]; then eval=1; shift; fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/hf_models.XXXXXX")
trap 'rm -rf "$dir"' EXIT
py=$("$python" "$here/hf_models.py" --model "$model" --out "$dir" --batch 8 --microbatches 4 --steps 3 | grep '^step ')
data="$dir/data.pt"
if ((eval)); then
  "$pippy" run --nproc "$nproc" -- "$train" --model "$dir/model.pt" --data "$data" --schedule "$schedule" \
    --microbatches 4 --steps 1 --eval --output "$dir/out.pt" --timeout 30 "$@"
  exec "$python" - "$dir" <<'PY'
import sys, torch, torch.jit._pickle as jp
d = sys.argv[1]
ref = torch.load(f"{d}/reference.pt")["logits"]
with torch.serialization.safe_globals([jp.restore_type_tag]):
    out = torch.load(f"{d}/out.pt")["out.0"]
err = ((out - ref).abs().max() / ref.abs().max()).item() if out.shape == ref.shape else float("inf")
print(f"pipelined inference vs eager logits: shape {tuple(out.shape)}, max relative difference {err:.3g}")
sys.exit(0 if err <= 1e-5 else 1)
PY
fi
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

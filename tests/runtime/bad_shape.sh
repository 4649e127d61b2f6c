#!/usr/bin/env bash
# bad_shape.sh PIPPY PIPPY_TRAIN PYTHON MODEL.pt [PIPPY_TRAIN ARGS...]: a micro-batch the model cannot take (step 1's images are
# 20x20, the vision transformer's position embedding fits 16x16) is an error at once, naming the stage and
# the shape, on a 2-process run whose c10d timeout is 300 s: the run must stop within 60 s, not wait it out.
set -euo pipefail
pippy=$1 train=$2 python=$3 model=$4
shift 4
dir=$(mktemp -d "${TMPDIR:-/tmp}/bad_shape.XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$python" - "$dir/data.pt" <<'PY'
import sys, torch
g = torch.Generator().manual_seed(0)
torch.save({"x0.0": torch.randn(10, 3, 16, 16, generator=g), "y.0": torch.randint(0, 10, (10,), generator=g),
            "x0.1": torch.randn(10, 3, 20, 20, generator=g), "y.1": torch.randint(0, 10, (10,), generator=g)},
           sys.argv[1])
PY
start=$SECONDS
set +e
out=$("$pippy" run --nproc 2 -- "$train" --model "$model" --data "$dir/data.pt" --microbatches 4 --steps 2 \
        --timeout 300 "$@" 2>&1)
status=$?
set -e
elapsed=$((SECONDS - start))
echo "$out"
echo "exit status $status after ${elapsed} s"
[[ $status -ne 0 ]] || { echo "FAIL: the run succeeded"; exit 1; }
((elapsed < 60)) || { echo "FAIL: took ${elapsed} s"; exit 1; }
grep -q '^step 0 loss ' <<<"$out" || { echo "FAIL: step 0 (good shapes) did not train"; exit 1; }
grep -q 'stage 0 micro-batch 0: forward failed on inputs of shape \[3, 3, 20, 20\]' <<<"$out" ||
  { echo "FAIL: no error naming stage 0 and the shape"; exit 1; }
echo "OK: a clear error at once"

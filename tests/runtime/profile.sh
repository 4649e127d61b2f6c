#!/usr/bin/env bash
# profile.sh PIPPY MYNETWORK PYTHON [MYNETWORK ARGS...]: the runtime's cost measurement and profile writing.
# Trains MyNetwork split in 4 stages (one per layer) with zbv on 2 processes (I and W measured apart) and
# checks the --profile file against the --trace of the same run, recomputed from the trace alone
# (check_profile.py), and its sizes against closed forms: parameter bytes 4 x (in x out + out) per layer
# (512->512, 512->1024, 1024->256, 256->10), activation bytes rows x width x 4 for a micro-batch of 11 or
# 10 rows (64 rows in 6) at the widths 512, 1024, 256. The profile's extras: a probed link for each
# direction between the 2 ranks, the micro-batch rows (64 / 6), and per-layer costs of the Sequential's 7
# modules with their outputs on the first micro-batch (11 rows) and all the parameters.
set -euo pipefail
pippy=$1 mynetwork=$2 py=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
steps=5
"$pippy" run --nproc 2 -- "$mynetwork" --schedule zbv --microbatches 6 --steps $steps --seed 1 --timeout 30 \
  --trace "$tmp/trace.json" --profile "$tmp/costs.json" "$@" | tee "$tmp/out.txt"
[[ $(grep -c '^step [0-9]* loss ' "$tmp/out.txt") -eq $steps ]] || { echo "FAIL: expected $steps loss lines"; exit 1; }
act() { echo "$1=$((11 * $2 * 4))|$((10 * $2 * 4))"; }
"$py" "$here/check_profile.py" "$tmp/trace.json" "$tmp/costs.json" --steps $steps \
  --param-bytes $((4 * (512 * 512 + 512))),$((4 * (512 * 1024 + 1024))),$((4 * (1024 * 256 + 256))),$((4 * (256 * 10 + 10))) \
  --activation-bytes "$(act 0 512)" --activation-bytes "$(act 1 1024)" --activation-bytes "$(act 2 256)" \
  --ranks 2 --microbatch-rows 10 \
  --layer-outputs $((11 * 512 * 4)),$((11 * 512 * 4)),$((11 * 1024 * 4)),$((11 * 1024 * 4)),$((11 * 256 * 4)),$((11 * 256 * 4)),$((11 * 10 * 4))
# The same cost file again from the run's trace and that cost file (`pippy trace profile`): every field,
# every number to 1e-9.
"$pippy" trace profile "$tmp/trace.json" --cost-file "$tmp/costs.json" -o "$tmp/again.json"
"$py" - "$tmp/costs.json" "$tmp/again.json" <<'PY'
import json, sys
first, again = (json.load(open(f)) for f in sys.argv[1:3])
def differ(x, y, path):
    if isinstance(x, dict) and isinstance(y, dict):
        return [d for k in sorted(set(x) | set(y)) for d in (differ(x[k], y[k], f"{path}.{k}") if k in x and k in y else [f"{path}.{k}: in one file only"])]
    if isinstance(x, list) and isinstance(y, list):
        return [f"{path}: {len(x)} against {len(y)} items"] if len(x) != len(y) else [d for i, (u, v) in enumerate(zip(x, y)) for d in differ(u, v, f"{path}[{i}]")]
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return [] if abs(x - y) <= 1e-9 * max(1.0, abs(x)) else [f"{path}: {x} against {y}"]
    return [] if x == y else [f"{path}: {x!r} against {y!r}"]
bad = differ(first, again, "")
assert not bad, "FAIL: pippy trace profile gave another cost file: " + "; ".join(bad[:10])
print("PASS: pippy trace profile gives the run's cost file back")
PY

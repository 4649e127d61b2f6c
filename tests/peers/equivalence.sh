#!/usr/bin/env bash
# equivalence.sh PIPPY EXAMPLE PYTHON NPROC SCHEDULE [EXAMPLE ARGS...]
# Trains one of our examples (mynetwork, gpt) three ways from the same initial weights and data: ours
# pipelined on NPROC processes (`pippy run`, which exports its start with --export-dir), ours unsplit, and
# torch.distributed.pipelining with the same schedule on NPROC Gloo processes (pp_train.py). Losses and
# final parameters must agree to 1e-5 (compare_runs.py).
set -euo pipefail
pippy=$1 example=$2 py=$3 nproc=$4 schedule=$5
shift 5
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--steps 5 --seed 3 --timeout 60 "$@")
"$pippy" run --nproc "$nproc" -- "$example" --schedule "$schedule" "${common[@]}" --export-dir "$tmp/ours" \
  | grep '^step ' >"$tmp/ours.txt"
"$pippy" run --nproc 1 -- "$example" "${common[@]}" --export-dir "$tmp/unsplit" | grep '^step ' >"$tmp/unsplit.txt"
"$py" "$here/pp_train.py" --export "$tmp/ours" --nproc "$nproc" --schedule "$schedule" --out "$tmp/peer.pt" \
  | grep '^step ' >"$tmp/peer.txt"
paste "$tmp/ours.txt" "$tmp/peer.txt" | awk '{ printf "  %s %s  ours %s  torch.pp %s\n", $1, $2, $4, $8 }'
"$py" "$here/compare_runs.py" --losses "$tmp/ours.txt" "$tmp/unsplit.txt" "$tmp/peer.txt" \
  --params "$tmp/ours/final.rank*.pt" "$tmp/unsplit/final.rank0.pt" "$tmp/peer.pt"

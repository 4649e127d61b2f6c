#!/usr/bin/env bash
# data_parallel.sh PIPPY MYNETWORK PYTHON SCHEDULE NPROC DP [MYNETWORK ARGS...]: pp x dp. MyNetwork trains 3
# steps unsplit on the global batch, and as NPROC/DP pipeline ranks x DP replicas (--dp DP) on NPROC
# processes: each replica its slice of the batch, the stages' gradients averaged over the replicas before
# each optimizer step. The losses (the replicas' mean) and every final parameter must equal the unsplit
# run's to 1e-5 relative. MYNETWORK may be another example taking the same options (gpt). With --zero1 among the args, each replica must also say it keeps the optimizer
# state of 1/DP of each stage's parameters.
set -euo pipefail
pippy=$1 mynetwork=$2 py=$3 schedule=$4 nproc=$5 dp=$6
shift 6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--steps 3 --seed 7 --batch 64 --microbatches 4 --timeout 30 "$@")
"$pippy" run --nproc 1 -- "$mynetwork" "${common[@]}" --export-dir "$tmp/unsplit" >"$tmp/unsplit.txt" 2>&1 ||
  { cat "$tmp/unsplit.txt"; exit 1; }
"$pippy" run --nproc "$nproc" -- "$mynetwork" --dp "$dp" --schedule "$schedule" "${common[@]}" --export-dir "$tmp/dp" \
  >"$tmp/dp.txt" 2>&1 || { cat "$tmp/dp.txt"; exit 1; }
"$py" - "$tmp" "$nproc" "$dp" "$*" <<'PY'
import glob, re, sys, torch
tmp, nproc, dp, args = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
loss = lambda f: [float(x) for x in re.findall(r"^step \d+ loss (\S+)", open(f).read(), re.M)]
a, b = loss(f"{tmp}/unsplit.txt"), loss(f"{tmp}/dp.txt")
print("unsplit:", a, f"\npp={nproc // dp} x dp={dp}:", b)
assert len(a) == len(b) == 3, f"FAIL: {len(a)} and {len(b)} loss lines (one per step, printed once)"
assert all(abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b)), "FAIL: losses differ"
load = lambda f: torch.load(f, weights_only=False)
ref = load(f"{tmp}/unsplit/final.rank0.pt")
got = {}
for f in sorted(glob.glob(f"{tmp}/dp/final.rank*.pt")):
    got.update(load(f))
# A tied weight the unsplit model exports under two names (GPT's lm_head.weight is tok_emb.weight) may come
# back under one: every name missing must equal a name present.
missing = sorted(set(ref) - set(got))
assert not set(got) - set(ref), f"FAIL: parameters {sorted(set(got) - set(ref))} are not the model's"
for k in missing:
    assert any(ref[k].shape == ref[o].shape and ref[k].equal(ref[o]) for o in got), f"FAIL: parameter {k} missing"
worst = max(((got[k] - ref[k]).norm() / ref[k].norm()).item() for k in got)
print(f"parameters: worst relative difference {worst:.2e}")
assert worst <= 1e-5, "FAIL: parameters differ"
if "--zero1" in args:
    kept = re.findall(r"stage (\d+): ZeRO-1 optimizer state for (\d+) of (\d+) parameters", open(f"{tmp}/dp.txt").read())
    assert len(kept) >= nproc, f"FAIL: {len(kept)} ZeRO-1 lines for {nproc} processes"
    for stage, n, total in kept:
        assert int(n) == -(-int(total) // dp), f"FAIL: stage {stage} keeps state for {n} of {total}"
    print("ZeRO-1: each replica keeps 1/%d of each stage's optimizer state" % dp)
print("PASS")
PY
# A world that is not pipeline ranks x replicas is refused, naming both numbers.
status=0
"$pippy" run --nproc 3 -- "$mynetwork" --dp 2 --schedule "$schedule" "${common[@]}" >"$tmp/bad.txt" 2>&1 || status=$?
[[ $status -ne 0 ]] && grep -q 'WORLD_SIZE 3 is not a multiple of --dp 2' "$tmp/bad.txt" ||
  { echo "FAIL: WORLD_SIZE 3 with --dp 2"; cat "$tmp/bad.txt"; exit 1; }
echo "WORLD_SIZE 3 with --dp 2: refused"

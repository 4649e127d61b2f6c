#!/usr/bin/env bash
# data_parallel.sh PIPPY MYNETWORK PYTHON SCHEDULE NPROC DP [MYNETWORK ARGS...]: pp x dp. MyNetwork trains 3
# steps unsplit on the global batch, and as NPROC/DP pipeline ranks x DP replicas (--dp DP) on NPROC
# processes: each replica its slice of the batch, the stages' gradients averaged over the replicas before
# each optimizer step. The losses (the replicas' mean) and every final parameter must equal the unsplit
# run's to 1e-5 relative. MYNETWORK may be another example taking the same options (gpt). With --zero1 among the args, each replica must also say it keeps the optimizer
# state of 1/DP of each stage's parameters. The trace (the first replica's ranks) must hold each stage's
# collectives over its replicas as its REDUCE_GRAD, once per step, on the communication stream: posted
# once the step's last backward has begun (with --dp-sync at-step, once it has ended) and before U, and
# over before U ends (none with one replica).
set -euo pipefail
pippy=$1 mynetwork=$2 py=$3 schedule=$4 nproc=$5 dp=$6
shift 6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--steps 3 --seed 7 --batch 64 --microbatches 4 --timeout 30 "$@")
"$pippy" run --nproc 1 -- "$mynetwork" "${common[@]}" --export-dir "$tmp/unsplit" >"$tmp/unsplit.txt" 2>&1 ||
  { cat "$tmp/unsplit.txt"; exit 1; }
"$pippy" run --nproc "$nproc" -- "$mynetwork" --dp "$dp" --schedule "$schedule" "${common[@]}" --export-dir "$tmp/dp" \
  --trace "$tmp/dp_trace.json" \
  >"$tmp/dp.txt" 2>&1 || { cat "$tmp/dp.txt"; exit 1; }
"$py" - "$tmp" "$nproc" "$dp" "$*" <<'PY'
import glob, json, re, sys, torch
from collections import defaultdict
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
events = [e for e in json.load(open(f"{tmp}/dp_trace.json"))["traceEvents"] if e.get("ph") == "X"]
by_stage = defaultdict(lambda: defaultdict(list))  # (rank, stage) -> kind -> events in time order
for e in sorted(events, key=lambda e: e["ts"]):
    by_stage[(e["pid"], e["args"]["stage"])][e["args"]["kind"]].append(e)
holders = sorted(k for k, kinds in by_stage.items() if kinds["U"])
assert holders, "FAIL: no U in the trace"
at_step = "at-step" in args
for key in holders:
    kinds, us = by_stage[key], by_stage[key]["U"]
    sums = kinds["REDUCE_GRAD"]
    assert len(us) == 3 and len(sums) == (3 if dp > 1 else 0), \
        f"FAIL: rank {key[0]} stage {key[1]}: {len(sums)} REDUCE_GRAD for {len(us)} U with {dp} replicas"
    for k, (s, u) in enumerate(zip(sums, us)):
        where = f"rank {key[0]} stage {key[1]} step {k}"
        step_from = us[k - 1]["ts"] + us[k - 1]["dur"] if k else -1e300
        backward = [b for kind in ("B", "W") for b in kinds[kind] if step_from <= b["ts"] < u["ts"]]
        assert backward, f"FAIL: {where}: no backward before U"
        assert s["tid"] == 1 and s["args"].get("bytes", 0) > 0 and "microbatch" not in s["args"], f"FAIL: {where}: {s}"
        # Overlapped, posted by the last backward; at the step, by the gate U waits in (its box starts after).
        posted_after = max(b["ts"] + (b["dur"] if at_step else 0) for b in backward)
        assert posted_after <= s["ts"] <= u["ts"], f"FAIL: {where}: REDUCE_GRAD posted at {s['ts']}, not in {posted_after}..{u['ts']}"
        assert s["ts"] + s["dur"] <= u["ts"] + u["dur"] + 1, f"FAIL: {where}: REDUCE_GRAD ends after U"
print(f"REDUCE_GRAD: {len(holders)} stages x {3 if dp > 1 else 0} steps, each in its step on its rank's communication stream")
print("PASS")
PY
# A world that is not pipeline ranks x replicas is refused, naming both numbers.
status=0
"$pippy" run --nproc 3 -- "$mynetwork" --dp 2 --schedule "$schedule" "${common[@]}" >"$tmp/bad.txt" 2>&1 || status=$?
[[ $status -ne 0 ]] && grep -q 'WORLD_SIZE 3 is not a multiple of --dp 2' "$tmp/bad.txt" ||
  { echo "FAIL: WORLD_SIZE 3 with --dp 2"; cat "$tmp/bad.txt"; exit 1; }
echo "WORLD_SIZE 3 with --dp 2: refused"

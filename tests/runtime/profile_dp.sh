#!/usr/bin/env bash
# profile_dp.sh PIPPY MYNETWORK PYTHON: the profile of a pp=2 x dp=2 run (4 processes) carries the replicas'
# link, fitted from timed all-reduces, and the simulator takes it: with the all-reduce at the step, the
# predicted step grows over the same pipeline without replicas by one all-reduce of a stage's parameters
# on that link (core's allreduce_time: 2 (D-1) steps of latency + bytes / D / bandwidth), and by no more
# than that of the largest stage.
set -euo pipefail
pippy=$1 mynetwork=$2 py=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$pippy" run --nproc 4 -- "$mynetwork" --dp 2 --dp-sync at-step --schedule 1f1b --microbatches 4 --batch 64 \
  --steps 4 --seed 1 --timeout 30 --profile "$tmp/costs.json" >"$tmp/out.txt" 2>&1 || { cat "$tmp/out.txt"; exit 1; }
# Without the step-to-step noise: each replica draws its own, so one draw's makespan over the mesh also
# holds the slower replica's draws.
"$py" -c 'import json, sys; c = json.load(open(sys.argv[1])); c.pop("noise", None); json.dump(c, open(sys.argv[2], "w"))' \
  "$tmp/costs.json" "$tmp/steady.json"
sim() { "$pippy" sim --schedule 1f1b --ranks 2 --microbatches 4 --cost-file "$tmp/steady.json" --json "$@"; }
sim --dp 2 --dp-sync at-step >"$tmp/dp.json"
sim >"$tmp/alone.json"
"$py" - "$tmp/costs.json" "$tmp/dp.json" "$tmp/alone.json" <<'PY'
import json, math, sys
costs, dp, alone = (json.load(open(f)) for f in sys.argv[1:4])
link = costs.get("replica_link")
assert link is not None, "FAIL: the profile has no replica_link"
lat, bw = link["latency_us"], link["bandwidth_gbps"]
assert math.isfinite(lat) and lat >= 0 and math.isfinite(bw) and bw >= 0 and (lat > 0 or bw > 0), f"FAIL: replica_link {link}"
def allreduce(p):  # core's allreduce_time for 2 replicas
    return (2 * 0.5 * p / (bw * 1e3) if bw > 0 else 0.0) + 2 * lat
params = [s["param_bytes"] for s in costs["stages"]]
grown = dp["makespan_us"] - alone["makespan_us"]
low, high = min(allreduce(p) for p in params), max(allreduce(p) for p in params)
print(f"replica link {lat:.1f} us, {bw:.3f} GB/s; at-step all-reduce adds {grown:.1f} us (one stage's: {low:.1f}..{high:.1f})")
assert low - 1e-6 * high <= grown <= high * (1 + 1e-9), "FAIL: the prediction does not add one all-reduce on the replica link"
print("PASS")
PY

#!/usr/bin/env bash
# model_ab.sh BUILD_DIR arrivals|noise [OUT_DIR]: what one part of the cost model does to the predictions,
# side by side on the same runs. Runs `bench/fidelity.sh BUILD_DIR OUT_DIR 2` (every schedule, its profile
# and trace kept), then predicts each schedule twice from its own profile (`pippy sim`'s expected_step_us):
# as written ("with"), and without that part ("without": the profile as it was written before the part was
# modelled). Prints per schedule the measured step and both errors, then the worst and the mean absolute
# error of each.
#   arrivals  the cost of a receive landing inside compute: without it, each stage and kind is given back
#             its arrivals' mean cost and arrival_cost_us is removed. The arrivals per action are counted
#             from the trace as the profile counts them (traces' fit_arrival_cost: receives of the rank
#             ending inside the action, within its kind's median time from its start, in the steps after
#             the first). The last column is arrival_cost_us.
#   noise     the actions' step-to-step noise: without it, "noise" is removed (every action at its mean).
#             The last column is the noise's 10th and 90th percentile.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
what=${2:?arrivals or noise}
[[ $what == arrivals || $what == noise ]] || { echo "model_ab.sh: the part is arrivals or noise, not '$what'" >&2; exit 2; }
out=${3:-$(mktemp -d "${TMPDIR:-/tmp}/model_ab.XXXXXX")}
mkdir -p "$out"
"$here/fidelity.sh" "$build" "$out" 2 >"$out/fidelity.txt"
printf "%-18s %12s %10s %10s %16s\n" schedule measured_ms with without "$([[ $what == arrivals ]] && echo arrival_cost_us || echo noise_p10_p90)"
for s in gpipe 1f1b zb-h1 zb-h2 interleaved-1f1b zbv dualpipev; do
  v=1
  case $s in interleaved-1f1b | zbv | dualpipev) v=2 ;; esac
  if [[ $what == arrivals ]]; then
    python3 - "$out/$s-2-trace.json" "$out/$s-2.json" "$out/$s-2-without.json" 20 <<'PY'
import bisect, collections, json, sys
trace, costs_file, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
costs = json.load(open(costs_file))
per_arrival = costs.pop("arrival_cost_us", 0.0)
receive_ends, by_rank = collections.defaultdict(list), collections.defaultdict(list)
for e in json.load(open(trace))["traceEvents"]:
    if e.get("ph") != "X":
        continue
    kind = e["args"].get("kind", "")
    if kind.startswith("RECV"):
        receive_ends[e["pid"]].append(e["ts"] + e["dur"])
    elif kind in ("F", "I", "W", "B", "U"):
        by_rank[e["pid"]].append(e)
for v in receive_ends.values():
    v.sort()
kept = collections.defaultdict(list)  # (stage, kind) -> its actions in the steps after the first
for evs in by_rank.values():
    evs.sort(key=lambda e: e["ts"])
    updates = [e for e in evs if e["args"]["kind"] == "U"]
    first_step_end = max(u["ts"] + u["dur"] for u in updates[:len(updates) // steps])
    for e in evs:
        if e["ts"] >= first_step_end:
            kept[(e["args"]["stage"], e["args"]["kind"])].append(e)
for (stage, kind), evs in kept.items():
    median = sorted(e["dur"] for e in evs)[len(evs) // 2]
    ends = [receive_ends[e["pid"]] for e in evs]
    n = sum(bisect.bisect_left(r, e["ts"] + min(e["dur"], median)) - bisect.bisect_right(r, e["ts"])
            for e, r in zip(evs, ends))
    costs["stages"][stage][kind] += per_arrival * n / len(evs)
json.dump(costs, open(out, "w"))
PY
    part=$(python3 -c "import json; print(round(json.load(open('$out/$s-2.json')).get('arrival_cost_us', 0)))")
  else
    part=$(python3 - "$out/$s-2.json" "$out/$s-2-without.json" <<'PY'
import json, sys
costs = json.load(open(sys.argv[1]))
q = costs.pop("noise", [])
json.dump(costs, open(sys.argv[2], "w"))
print(f"{q[len(q) // 10]:.2f}-{q[len(q) * 9 // 10]:.2f}" if q else "-")
PY
)
  fi
  predict() {
    "$build/tools/pippy" sim --schedule "$s" --ranks 2 --stages-per-rank "$v" --microbatches 8 --cost-file "$1" --json |
      awk -F': ' '/"expected_step_us"/ {gsub(/,/, "", $2); print $2 / 1000}'
  }
  measured=$(awk '/^measured step_us/ {print $3 / 1000}' "$out/$s-2.log")
  with=$(predict "$out/$s-2.json")
  without=$(predict "$out/$s-2-without.json")
  awk -v s="$s" -v m="$measured" -v a="$with" -v b="$without" -v c="$part" \
    'BEGIN {printf "%-18s %12.3f %+9.1f%% %+9.1f%% %16s\n", s, m, 100 * (a - m) / m, 100 * (b - m) / m, c}'
done | tee "$out/ab.txt"
awk '{a = $3 + 0; b = $4 + 0; a = a < 0 ? -a : a; b = b < 0 ? -b : b; sa += a; sb += b; wa = a > wa ? a : wa; wb = b > wb ? b : wb; n++}
     END {printf "worst with %.1f%%, without %.1f%%; mean absolute error with %.1f%%, without %.1f%%\n", wa, wb, sa / n, sb / n}' \
  "$out/ab.txt"

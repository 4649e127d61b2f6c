#!/usr/bin/env bash
# quickstart_check.sh PYTHON: runs scripts/quickstart.sh on this build (CTest sets SKIP_BUILD=1, BUILD_DIR,
# OUT_DIR, STEPS) and checks what it wrote and printed, not just its exit status:
# - every file it lists, written afresh (OUT_DIR is emptied first);
# - STEPS `step N loss X` lines, finite, the first near ln 10 (10 classes, random initial weights);
# - the unit-cost simulation's trace parses (`pippy trace summary`) with 1f1b's closed forms at R=3, M=6,
#   F=1, B=2: step (M+R-1)(F+B) = 24 us, bubble (R-1)/(M+R-1) = 0.25;
# - the measured traces parse and hold every action: 39 compute actions a step (F and B of 6 micro-batches
#   on 3 stages, 3 U), STEPS times in measured.json, once in measured-step.json;
# - the cost file matches the measured trace (check_profile.py) and the closed-form parameter bytes;
# - the measured step is at least the busiest rank's compute (6 (F+B) + U of its stage), the bubble in
#   [0, 1); the prediction from the measured costs is at least the busiest stage's work and at most all
#   the work done one action at a time;
# - the picture is a PNG when pippy-view was built.
set -uo pipefail
py=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT_DIR:?} steps=${STEPS:?} build=${BUILD_DIR:?}
pippy=$build/tools/pippy
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$out"
log=$("$root/scripts/quickstart.sh" 2>&1)
rc=$?
echo "$log"
((rc == 0)) || fail "quickstart.sh exited with $rc"
for f in predicted-uniform.json measured.json measured-step.json measured-costs.json predicted.json measured.txt \
         predicted.txt; do
  [[ -s $out/$f ]] || fail "$out/$f was not written"
done
grep -q "^== 4. predicted vs measured" <<<"$log" || fail "no comparison printed"

uniform=$("$pippy" trace summary "$out/predicted-uniform.json") || fail "pippy trace summary cannot read predicted-uniform.json"
grep -q "^step time: 24.000 us$" <<<"$uniform" || fail "unit-cost step time is not (M+R-1)(F+B) = 24 us: $uniform"
grep -q "^bubble fraction: 0.2500 " <<<"$uniform" || fail "unit-cost bubble is not (R-1)/(M+R-1) = 0.25"
for f in measured:$((39 * steps)) measured-step:39 predicted:39; do
  name=${f%%:*} want=${f#*:}
  s=$("$pippy" trace summary "$out/$name.json") || fail "pippy trace summary cannot read $name.json"
  grep -qE "^ranks: 3  actions: $want compute, [0-9]+ transfers" <<<"$s" ||
    fail "$name.json: expected 3 ranks and $want compute actions: $(sed -n 2p <<<"$s")"
done

"$py" "$here/check_profile.py" "$out/measured.json" "$out/measured-costs.json" --steps "$steps" \
  --param-bytes $((4 * (512 * 512 + 512))),$((4 * (512 * 1024 + 1024))),$((4 * (1024 * 256 + 256 + 256 * 10 + 10))) ||
  fail "the cost file does not match the measured trace"

"$py" - "$out" "$steps" <<'PY' || fail "numbers out of range"
import json, math, re, sys
out, steps = sys.argv[1], int(sys.argv[2])
M = 6
bad = []
txt = open(f"{out}/measured.txt").read()
losses = [float(x) for x in re.findall(r"^step \d+ loss (\S+)$", txt, re.M)]
if len(losses) != steps or not all(math.isfinite(x) and x > 0 for x in losses):
    bad.append(f"losses {losses}: expected {steps} finite positive ones")
elif abs(losses[0] - math.log(10)) > 0.1:
    bad.append(f"first loss {losses[0]}, expected about ln 10 = {math.log(10):.4f}")
m = re.search(r"^measured step_us (\S+) bubble (\S+) ", txt, re.M)
profile = json.load(open(f"{out}/measured-costs.json"))
costs = profile["stages"]
busiest = max(M * (c["F"] + c["B"]) + c["U"] for c in costs)
if not m:
    bad.append("no `measured step_us` line")
else:
    step_us, bubble = float(m.group(1)), float(m.group(2))
    if not (math.isfinite(step_us) and step_us >= busiest * (1 - 1e-6)):
        bad.append(f"measured step {step_us} us is shorter than the busiest rank's compute {busiest} us")
    if not 0 <= bubble < 1:
        bad.append(f"measured bubble {bubble} is not in [0, 1)")
pred = json.load(open(f"{out}/predicted.txt"))
# All work one after the other: compute, the runtime's overhead before each compute action, and every
# transfer over the slowest link.
S = len(costs)
slowest = max((l["latency_us"] + (max(c.get("output_bytes", 0) for c in costs) / (l["bandwidth_gbps"] * 1e3)
                                  if l["bandwidth_gbps"] > 0 else 0) for l in profile.get("links", [])), default=0)
serial = (sum(M * (c["F"] + c["B"]) + c["U"] for c in costs) + S * (2 * M + 1) * profile.get("action_overhead_us", 0)
          + 2 * M * (S - 1) * slowest)
if not busiest * (1 - 1e-6) <= pred["makespan_us"] <= serial * (1 + 1e-6):
    bad.append(f"predicted step {pred['makespan_us']} us not in [busiest stage {busiest}, all work {serial}]")
if not 0 <= pred["bubble_fraction"] < 1:
    bad.append(f"predicted bubble {pred['bubble_fraction']} not in [0, 1)")
print(f"losses {losses}; predicted {pred['makespan_us']:.0f} us in [{busiest:.0f}, {serial:.0f}]; "
      f"measured {m.group(1) if m else '?'} us")
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
PY
if [[ -x $build/gui/pippy-view ]]; then
  [[ $(head -c 8 "$out/timeline.png" 2>/dev/null | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
    fail "timeline.png is not a PNG"
fi
echo "OK: the Quick start wrote and printed what it says"

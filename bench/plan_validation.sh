#!/usr/bin/env bash
# plan_validation.sh BUILD_DIR [OUT_DIR] [TOP] [MODEL] [ROUNDS]: runs the planner's top TOP (5) plans for real and
# compares. MODEL mynetwork (default: batch 128, profiled with 8 micro-batches; per-layer costs of its 7
# modules) or gpt (the example's 6-block GPT, batch 32, profiled with 4 micro-batches; a layer per block) is
# profiled on 2 Gloo processes (`pippy run --bind-cores`, 1F1B, 40 steps, 1 thread per process).
# `pippy plan` ranks schedule x V x M x split for a global batch of the same rows; each of its top plans then trains 40 steps
# with `--plan`, ROUNDS (3) times in turn, and the median of its measured steps (`measured step_us`,
# the steps after the first) is put beside the prediction. Prints the table, whether the predicted best is the measured best or within 5%
# of it, and the Spearman correlation of the two rankings; then the profiled configuration, run in the same
# rounds, against the plans.
set -euo pipefail
build=$(cd "$1" && pwd)
out=${2:-$(mktemp -d "${TMPDIR:-/tmp}/plan_validation.XXXXXX")}
top=${3:-5}
model=${4:-mynetwork}
rounds=${5:-3}
mkdir -p "$out"
pippy=$build/tools/pippy program=$build/examples/$model
case $model in
  mynetwork) batch=128 profile_mb=8 ;;
  gpt) batch=32 profile_mb=4 ;;
  *) echo "error: MODEL must be mynetwork or gpt (got '$model')" >&2; exit 2 ;;
esac
common="--batch $batch --steps 40 --threads 1"
profiled="--schedule 1f1b --microbatches $profile_mb" # the configuration profiled, and the plans' baseline
"$pippy" run --nproc 2 --bind-cores -- "$program" $profiled $common \
  --profile "$out/profile.json" >"$out/profile.log" 2>&1
"$pippy" plan --cost-file "$out/profile.json" --ranks 2 --global-batch $batch --top "$top" --json >"$out/plans.json"
python3 - "$out" "$top" <<'PY'
import json, os, sys
out, top = sys.argv[1], int(sys.argv[2])
plans = json.load(open(f"{out}/plans.json"))["plans"][:top]
for k, p in enumerate(plans):
    os.makedirs(f"{out}/plan{k}", exist_ok=True)
    json.dump({key: p[key] for key in ("schedule", "stages_per_rank", "microbatches", "boundaries")} | {"ranks": 2},
              open(f"{out}/plan{k}/plan.json", "w"))
PY
# Rounds with the plans in turn in each, so that the machine's drift falls on every plan alike; last in
# each round the profiled configuration (1F1B, the profile's micro-batches, the example's split), the
# baseline a user starts from.
mkdir -p "$out/baseline"
for round in $(seq 1 "$rounds"); do
  for ((k = 0; k < top; ++k)); do
    [[ -f $out/plan$k/plan.json ]] || break
    log=$out/plan$k/run$round.log
    "$pippy" run --nproc 2 --bind-cores -- "$program" --plan "$out/plan$k" $common >"$log" 2>&1 ||
      { echo "error: plan $k failed (see $log)" >&2; exit 1; }
  done
  log=$out/baseline/run$round.log
  "$pippy" run --nproc 2 --bind-cores -- "$program" $profiled $common >"$log" 2>&1 ||
    { echo "error: the profiled configuration failed (see $log)" >&2; exit 1; }
done
baseline_predicted=$("$pippy" sim $profiled --ranks 2 --cost-file "$out/profile.json" --json |
  python3 -c "import json, sys; print(json.load(sys.stdin)['expected_step_us'])")
python3 - "$out" "$rounds" "$profile_mb" "$baseline_predicted" <<'PY'
import json, os, re, sys
out, rounds, profile_mb, baseline_predicted = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
plans = json.load(open(f"{out}/plans.json"))["plans"]
def median_step_ms(logs):  # the median of the rounds (an odd number: the middle one)
    steps = sorted(float(re.search(r"^measured step_us ([0-9.e+]+)", open(log).read(), re.M).group(1)) / 1000
                   for log in logs)
    return steps[len(steps) // 2]
rows = []
for k, p in enumerate(plans):
    logs = [f"{out}/plan{k}/run{r}.log" for r in range(1, rounds + 1)]
    if not all(os.path.exists(log) for log in logs):
        break
    rows.append((k, p, median_step_ms(logs)))
print(f"{'#':>2} {'schedule':<18} {'V':>2} {'M':>3} {'split':<16} {'predicted_ms':>12} {'measured_ms':>11}")
for k, p, meas in rows:
    split = ",".join(map(str, p["boundaries"][1:]))
    print(f"{k + 1:>2} {p['schedule']:<18} {p['stages_per_rank']:>2} {p['microbatches']:>3} {split:<16} "
          f"{p['predicted_step_us'] / 1000:>12.3f} {meas:>11.3f}")
def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    for pos, i in enumerate(order):
        r[i] = pos + 1.0
    return r
pred = [p["predicted_step_us"] for _, p, _ in rows]
meas = [m for _, _, m in rows]
rp, rm = ranks(pred), ranks(meas)
n = len(rows)
rho = 1 - 6 * sum((a - b) ** 2 for a, b in zip(rp, rm)) / (n * (n * n - 1)) if n > 1 else 1.0
best_measured = min(meas)
gap = 100 * (meas[0] - best_measured) / best_measured
print(f"predicted best (#1) measured {meas[0]:.3f} ms, measured best {best_measured:.3f} ms: {gap:.1f}% slower")
print(f"spearman {rho:.2f}")
baseline = median_step_ms([f"{out}/baseline/run{r}.log" for r in range(1, rounds + 1)])
print(f"profiled configuration (1f1b, M = {profile_mb}): predicted {baseline_predicted / 1000:.3f} ms, measured "
      f"{baseline:.3f} ms; the predicted best measured {100 * (1 - meas[0] / baseline):.1f}% faster, the measured best "
      f"{100 * (1 - best_measured / baseline):.1f}%")
PY

#!/usr/bin/env bash
# plan_validation.sh BUILD_DIR [OUT_DIR] [TOP] [MODEL] [ROUNDS]: runs the planner's top TOP (5) plans for real and
# compares. MODEL mynetwork (default: batch 128, profiled with 8 micro-batches; per-layer costs of its 7
# modules) or gpt (the example's 6-block GPT, batch 32, profiled with 4 micro-batches; a layer per block) is
# profiled on 2 Gloo processes (`pippy run --bind-cores`, 1F1B, 40 steps, 1 thread per process).
# `pippy plan` ranks schedule x V x M x split for a global batch of the same rows; each of its top plans then
# trains 40 steps with `--plan`, and so does the profiled configuration (the baseline), ROUNDS (11) times, all
# of them once in each round, starting one later each round. A plan's measure is the median over the rounds
# of its `measured step_us` (the steps after the first) over the baseline's in the same round: the VM's
# speed drifts between rounds by up to 1.6x, a ratio taken side by side does not. Prints the table (the
# median step too), whether the predicted best is the measured best or within 5% of it, and the Spearman
# correlation of the two rankings (tied predictions share their mean rank); then the plans against the
# baseline. REPORT_ONLY=1 prints that from OUT_DIR's logs of an earlier call, without running anything.
# A second run (GPipe, OTHER_MB micro-batches, default 1: the plans' largest micro-batch) is profiled too, and
# the planner takes both (`pippy plan --other-size`: each layer's time blended in rows between the two runs'
# sizes, and each link through both runs' times); OTHER_MB= (empty) plans from the first profile alone.
# Each profile is the median of PROFILE_RUNS (3) runs of its command, in turn (`pippy plan --cost-file A B C`:
# core's median_profile): on this VM one run's stage times move by 20-50% from the next one's, which no
# prediction of a few percent survives. PROFILE_RUNS=1 profiles once, as before.
set -euo pipefail
build=$(cd "$1" && pwd)
out=${2:-$(mktemp -d "${TMPDIR:-/tmp}/plan_validation.XXXXXX")}
top=${3:-5}
model=${4:-mynetwork}
rounds=${5:-11}
mkdir -p "$out"
pippy=$build/tools/pippy program=$build/examples/$model
case $model in
  mynetwork) batch=128 profile_mb=8 ;;
  gpt) batch=32 profile_mb=4 ;;
  *) echo "error: MODEL must be mynetwork or gpt (got '$model')" >&2; exit 2 ;;
esac
common="--batch $batch --steps 40 --threads 1"
profiled="--schedule 1f1b --microbatches $profile_mb" # the configuration profiled, and the plans' baseline
profile_runs=${PROFILE_RUNS:-3}
((profile_runs >= 1)) || { echo "error: PROFILE_RUNS must be at least 1 (got $profile_runs)" >&2; exit 2; }
profiles=() others=() # profile.json, profile-2.json, ...: the runs of each command
for ((k = 1; k <= profile_runs; ++k)); do
  suffix=$( ((k == 1)) || echo "-$k")
  profiles+=("$out/profile$suffix.json")
  others+=("$out/profile-other$suffix.json")
done
OTHER_MB=${OTHER_MB-1}
if [[ ${REPORT_ONLY:-} == 1 ]]; then # an earlier call's directory: the profiles it has
  kept=()
  for p in "${profiles[@]}"; do [[ -f $p ]] && kept+=("$p"); done
  profiles=("${kept[@]}")
fi
if [[ ${REPORT_ONLY:-} != 1 ]]; then
for ((k = 0; k < profile_runs; ++k)); do # the two commands in turn, so that the VM's drift falls on both
  # shellcheck disable=SC2086 # flags are words
  "$pippy" run --nproc 2 --bind-cores -- "$program" $profiled $common \
    --profile "${profiles[$k]}" >"${profiles[$k]%.json}.log" 2>&1
  if [[ -n $OTHER_MB ]]; then
    # shellcheck disable=SC2086
    "$pippy" run --nproc 2 --bind-cores -- "$program" --schedule gpipe --microbatches "$OTHER_MB" $common \
      --profile "${others[$k]}" >"${others[$k]%.json}.log" 2>&1
  fi
done
other=()
[[ -n $OTHER_MB ]] && other=(--other-size "${others[@]}")
"$pippy" plan --cost-file "${profiles[@]}" "${other[@]}" --ranks 2 --global-batch $batch --top "$top" --json >"$out/plans.json"
python3 - "$out" "$top" <<'PY'
import json, os, sys
out, top = sys.argv[1], int(sys.argv[2])
plans = json.load(open(f"{out}/plans.json"))["plans"][:top]
for k, p in enumerate(plans):
    os.makedirs(f"{out}/plan{k}", exist_ok=True)
    json.dump({key: p[key] for key in ("schedule", "stages_per_rank", "microbatches", "boundaries")} | {"ranks": 2},
              open(f"{out}/plan{k}/plan.json", "w"))
PY
# Rounds with the plans and the baseline (the profiled configuration: 1F1B, the profile's micro-batches,
# the example's split, what a user starts from) in turn, the first one later each round, so that the
# machine's drift within a round falls on every plan alike.
runs=()
for ((k = 0; k < top; ++k)); do
  [[ -f $out/plan$k/plan.json ]] && runs+=("plan$k")
done
runs+=(baseline)
mkdir -p "$out/baseline"
for round in $(seq 1 "$rounds"); do
  for ((i = 0; i < ${#runs[@]}; ++i)); do
    run=${runs[$(((i + round - 1) % ${#runs[@]}))]}
    log=$out/$run/run$round.log
    if [[ $run == baseline ]]; then
      # shellcheck disable=SC2086 # flags are words
      "$pippy" run --nproc 2 --bind-cores -- "$program" $profiled $common >"$log" 2>&1 ||
        { echo "error: the profiled configuration failed (see $log)" >&2; exit 1; }
    else
      # shellcheck disable=SC2086
      "$pippy" run --nproc 2 --bind-cores -- "$program" --plan "$out/$run" $common >"$log" 2>&1 ||
        { echo "error: $run failed (see $log)" >&2; exit 1; }
    fi
  done
done
fi
# shellcheck disable=SC2086
baseline_predicted=$("$pippy" sim $profiled --ranks 2 --cost-file "${profiles[@]}" --json |
  python3 -c "import json, sys; print(json.load(sys.stdin)['expected_step_us'])")
python3 - "$out" "$rounds" "$profile_mb" "$baseline_predicted" <<'PY'
import json, os, re, statistics, sys
out, rounds, profile_mb, baseline_predicted = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
plans = json.load(open(f"{out}/plans.json"))["plans"]
def step_ms(log):
    return float(re.search(r"^measured step_us ([0-9.e+]+)", open(log).read(), re.M).group(1)) / 1000
def median(values):  # of an odd number: the middle one; else the mean of the middle two
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
baseline_steps = [step_ms(f"{out}/baseline/run{r}.log") for r in range(1, rounds + 1)]
def quartiles(values):  # the 25th and 75th percentiles, linear between the sorted values
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3
rows = []  # (index, plan, median step ms, median ratio to the baseline of the same round, steps per round)
for k, p in enumerate(plans):
    logs = [f"{out}/plan{k}/run{r}.log" for r in range(1, rounds + 1)]
    if not all(os.path.exists(log) for log in logs):
        break
    steps = [step_ms(log) for log in logs]
    rows.append((k, p, median(steps), median(s / b for s, b in zip(steps, baseline_steps)), steps))
# Beside each plan, against plan 1: predicted, the lowest and highest of its step over plan 1's from each
# profile alone (`pippy plan` with several profiles); measured, the quartiles of its step over plan 1's in
# the same round. A range that holds 0 is a tie within the profiles' runs, or within the rounds.
def by_profile(p):
    own, first = p.get("expected_step_us_by_profile"), rows[0][1].get("expected_step_us_by_profile") if rows else None
    if not own or not first:
        return "-"
    over = [100 * (a / b - 1) for a, b in zip(own, first)]
    return f"{min(over):+.1f}..{max(over):+.1f}%"
print(f"{'#':>2} {'schedule':<18} {'V':>2} {'M':>3} {'split':<16} {'predicted_ms':>12} {'measured_ms':>11} "
      f"{'predicted/baseline':>18} {'measured/baseline':>17} {'vs_1_by_profile':>16} {'vs_1_rounds_p25..p75':>21}")
for k, p, step, ratio, steps in rows:
    split = ",".join(map(str, p["boundaries"][1:]))
    lo, hi = quartiles([100 * (a / b - 1) for a, b in zip(steps, rows[0][4])])
    print(f"{k + 1:>2} {p['schedule']:<18} {p['stages_per_rank']:>2} {p['microbatches']:>3} {split:<16} "
          f"{p['predicted_step_us'] / 1000:>12.3f} {step:>11.3f} {p['predicted_step_us'] / baseline_predicted:>18.3f} "
          f"{ratio:>17.3f} {by_profile(p):>16} {f'{lo:+.1f}..{hi:+.1f}%':>21}")
def ranks(values):  # 1 for the least; equal values share the mean of their places
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    pos = 0
    while pos < len(order):
        end = pos
        while end + 1 < len(order) and values[order[end + 1]] == values[order[pos]]:
            end += 1
        for i in order[pos:end + 1]:
            r[i] = (pos + end) / 2 + 1
        pos = end + 1
    return r
def pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else 0.0
pred = [p["predicted_step_us"] for _, p, _, _, _ in rows]
meas = [ratio for _, _, _, ratio, _ in rows]
rho = pearson(ranks(pred), ranks(meas)) if len(rows) > 1 else 1.0  # Spearman: Pearson's on the ranks
best_measured = min(meas)
gap = 100 * (meas[0] - best_measured) / best_measured
print(f"predicted best (#1) measured {meas[0]:.3f} x the baseline, measured best {best_measured:.3f} x: {gap:.1f}% slower")
print(f"spearman {rho:.2f}")
print(f"profiled configuration (1f1b, M = {profile_mb}): predicted {baseline_predicted / 1000:.3f} ms, measured "
      f"{median(baseline_steps):.3f} ms (median of the rounds); the predicted best measured {100 * (1 - meas[0]):.1f}% "
      f"faster, the measured best {100 * (1 - best_measured):.1f}%")
PY

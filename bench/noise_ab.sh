#!/usr/bin/env bash
# noise_ab.sh BUILD_DIR [OUT_DIR]: what the actions' step-to-step noise does to the predictions, side by
# side on the same runs. Runs `bench/fidelity.sh BUILD_DIR OUT_DIR 2` (every schedule, its profile kept),
# then predicts each schedule twice from its own profile: as written ("with": sim's expected_step_us, the
# mean step over draws from the profile's "noise" quantiles), and with "noise" removed ("without": every
# action at its mean, what the profile gave before the noise was measured). Prints per schedule the
# measured step and both errors, then the worst and the mean absolute error of each.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
out=${2:-$(mktemp -d "${TMPDIR:-/tmp}/noise_ab.XXXXXX")}
mkdir -p "$out"
"$here/fidelity.sh" "$build" "$out" 2 >"$out/fidelity.txt"
printf "%-18s %12s %10s %10s %14s\n" schedule measured_ms with without noise_p10_p90
for s in gpipe 1f1b zb-h1 zb-h2 interleaved-1f1b zbv dualpipev; do
  v=1
  case $s in interleaved-1f1b | zbv | dualpipev) v=2 ;; esac
  spread=$(python3 - "$out/$s-2.json" "$out/$s-2-without.json" <<'PY'
import json, sys
costs = json.load(open(sys.argv[1]))
q = costs.pop("noise", [])
json.dump(costs, open(sys.argv[2], "w"))
print(f"{q[len(q) // 10]:.2f}-{q[len(q) * 9 // 10]:.2f}" if q else "-")
PY
)
  predict() {
    "$build/tools/pippy" sim --schedule "$s" --ranks 2 --stages-per-rank "$v" --microbatches 8 --cost-file "$1" --json |
      awk -F': ' '/"expected_step_us"/ {gsub(/,/, "", $2); print $2 / 1000}'
  }
  measured=$(awk '/^measured step_us/ {print $3 / 1000}' "$out/$s-2.log")
  with=$(predict "$out/$s-2.json")
  without=$(predict "$out/$s-2-without.json")
  awk -v s="$s" -v m="$measured" -v a="$with" -v b="$without" -v q="$spread" \
    'BEGIN {printf "%-18s %12.3f %+9.1f%% %+9.1f%% %14s\n", s, m, 100 * (a - m) / m, 100 * (b - m) / m, q}'
done | tee "$out/ab.txt"
awk '{a = $3 + 0; b = $4 + 0; a = a < 0 ? -a : a; b = b < 0 ? -b : b; sa += a; sb += b; wa = a > wa ? a : wa; wb = b > wb ? b : wb; n++}
     END {printf "worst with %.1f%%, without %.1f%%; mean absolute error with %.1f%%, without %.1f%%\n", wa, wb, sa / n, sb / n}' \
  "$out/ab.txt"

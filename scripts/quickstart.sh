#!/usr/bin/env bash
# Quick start: install, build, then simulate the default schedule (1f1b, 3 ranks, 6 micro-batches), train
# PiPPy's MyNetwork with it on 3 local processes (real libtorch + Gloo), and compare prediction and
# measurement. Everything lands in out/ (or $OUT_DIR):
#   predicted-uniform.json  simulated trace, unit costs (F=1, B=2)
#   measured.json           measured trace of the real run, every step (Perfetto / pippy-view)
#   measured-step.json      its last step alone (beside the simulated step)
#   measured-costs.json     per-stage costs measured in that run (simulator cost file)
#   predicted.json          simulated trace with those measured costs
#   timeline.png            predicted and measured side by side (when pippy-view was built)
# Env: BUILD_DIR (default build), SKIP_BUILD=1 to reuse a build, STEPS (default 10), OUT_DIR (default out).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
steps=${STEPS:-10}
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  scripts/setup.sh >/dev/null
  # The real backend and the viewer are on by default; say so in case build/ was configured without.
  scripts/build.sh -DPIPPY_BUILD_TORCH=ON -DPIPPY_BUILD_GUI=ON
fi
pippy=$build/tools/pippy
mynetwork=$build/examples/mynetwork
for f in "$pippy" "$mynetwork"; do
  [[ -x $f ]] || { echo "quickstart: $f was not built" >&2; exit 1; }
done
out=${OUT_DIR:-out}
mkdir -p "$out"
sched=(--schedule 1f1b --microbatches 6)

echo "== 1. simulate the default: 1f1b, 3 ranks, 6 micro-batches, unit costs"
"$pippy" sim "${sched[@]}" --ranks 3 --trace "$out"/predicted-uniform.json

echo "== 2. train MyNetwork on 3 local processes ($steps steps, Gloo on loopback)"
"$pippy" run --nproc 3 -- "$mynetwork" "${sched[@]}" --steps "$steps" --seed 0 \
  --trace "$out"/measured.json --step-trace "$out"/measured-step.json --profile "$out"/measured-costs.json |
  tee "$out"/measured.txt

echo "== 3. simulate again with the costs measured in that run"
"$pippy" sim "${sched[@]}" --ranks 3 --cost-file "$out"/measured-costs.json --trace "$out"/predicted.json --json \
  > "$out"/predicted.txt

predicted_us=$(sed -n 's/.*"makespan_us": \([0-9.e+-]*\).*/\1/p' "$out"/predicted.txt | head -1)
predicted_bubble=$(sed -n 's/^  "bubble_fraction": \([0-9.e+-]*\).*/\1/p' "$out"/predicted.txt | head -1)
measured_us=$(sed -n 's/^measured step_us \([0-9.e+-]*\) bubble.*/\1/p' "$out"/measured.txt)
measured_bubble=$(sed -n 's/^measured step_us [0-9.e+-]* bubble \([0-9.e+-]*\).*/\1/p' "$out"/measured.txt)
echo "== 4. predicted vs measured (1f1b, 3 ranks, 6 micro-batches; measured over steps 2..$steps)"
awk -v p="$predicted_us" -v m="$measured_us" -v pb="$predicted_bubble" -v mb="$measured_bubble" 'BEGIN {
  printf "  step time      predicted %10.0f us   measured %10.0f us   (measured/predicted %.2f)\n", p, m, m / p
  printf "  bubble         predicted %10.3f      measured %10.3f\n", pb, mb
}'

view=$build/gui/pippy-view
[[ -x $view ]] || view=$(command -v pippy-view || true)
if [[ -n $view && -x $view ]]; then
  QT_QPA_PLATFORM=offscreen "$view" --export "$out"/timeline.png "$out"/predicted.json "$out"/measured-step.json \
    && echo "== picture: $out/timeline.png"
else
  echo "(pippy-view not built: open $out/*.json in https://ui.perfetto.dev)"
fi
echo "== traces: $out/predicted-uniform.json $out/predicted.json $out/measured.json $out/measured-step.json"

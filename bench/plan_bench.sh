#!/usr/bin/env bash
# pippy plan's wall time on a GPT-like profile: 48 layers (embedding, 46 blocks, head) on 8 ranks, every
# schedule, V = 1..6, M = 1..64 (and M from a global batch of 64), links of 5 us and 25 GB/s, a memory
# cap that excludes part of the candidates; then with arrivals' costs, and with step-to-step noise. One core:
# pippy plan is single-threaded.
# usage: bench/plan_bench.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
pippy=$build/tools/pippy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
profile=$tmp/gpt48.json
{ # times in us, bytes as a 1.3B-parameter GPT's, measured on 4-row micro-batches
  printf '{"stages": [{"F": 1}], "microbatch_rows": 4, "action_overhead_us": 15, "layers": [\n'
  printf '  {"name": "wte", "F": 20, "I": 0, "W": 10, "activation_bytes": 1048576, "output_bytes": 2097152, "param_bytes": 157286400},\n'
  for i in $(seq 0 45); do
    printf '  {"name": "h.%d", "F": %d, "I": 100, "W": 90, "activation_bytes": 25165824, "output_bytes": 2097152, "param_bytes": 29360128},\n' \
      "$i" $((100 + (i % 5) * 3))
  done
  printf '  {"name": "lm_head", "F": 150, "I": 150, "W": 150, "activation_bytes": 16777216, "output_bytes": 2097152, "param_bytes": 157286400}\n]}\n'
} >"$profile"
links=(--latency-us 5 --bandwidth-gbps 25)
echo "## all schedules, V = 1..6, M = 1..64, cap 3 GB"
/usr/bin/time -f "wall %e s, user %U s, max RSS %M KB" \
  "$pippy" plan --cost-file "$profile" --ranks 8 --microbatches $(seq 1 64) --memory-cap 3000000000 "${links[@]}"
echo "## the same, with a cost of 20 us per arrival landing inside compute (ends settled in time order)"
sed 's/"action_overhead_us": 15,/"action_overhead_us": 15, "arrival_cost_us": 20,/' "$profile" >"$tmp/gpt48-arrivals.json"
/usr/bin/time -f "wall %e s, user %U s, max RSS %M KB" \
  "$pippy" plan --cost-file "$tmp/gpt48-arrivals.json" --ranks 8 --microbatches $(seq 1 64) --memory-cap 3000000000 "${links[@]}"
echo "## the same, with step-to-step noise (quantiles 0.8-1.4 x the mean): the best 16 drawn again, ranked by expected step"
sed 's/"action_overhead_us": 15,/"action_overhead_us": 15, "noise": [0.80, 0.88, 0.92, 0.95, 0.98, 1.00, 1.04, 1.09, 1.16, 1.40],/' \
  "$profile" >"$tmp/gpt48-noise.json"
/usr/bin/time -f "wall %e s, user %U s, max RSS %M KB" \
  "$pippy" plan --cost-file "$tmp/gpt48-noise.json" --ranks 8 --microbatches $(seq 1 64) --memory-cap 3000000000 "${links[@]}"
echo "## all schedules, V = 1..6, M from the divisors of a global batch of 64 rows"
/usr/bin/time -f "wall %e s, user %U s, max RSS %M KB" \
  "$pippy" plan --cost-file "$profile" --ranks 8 --global-batch 64 "${links[@]}"

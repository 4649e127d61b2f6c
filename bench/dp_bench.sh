#!/usr/bin/env bash
# dp_bench.sh BUILD_DIR [ROUNDS]: pp x dp, the gradient all-reduce overlapped with the pipeline or run at
# the optimizer step (issue 13), and ZeRO-1 (overlapped reduce-scatter, all-gather after U). 2 cores cannot
# show data-parallel scaling, so this measures the overlap: MyNetwork (512 -> 1024 -> 1024 -> 1024 -> 10),
# batch 128, 8 micro-batches, 20 steps, as 2 pipeline ranks x 2 replicas on 4 processes, the three modes in
# turn ROUNDS times (default 3); the median `measured step_us` of each. Beside it the simulator's
# prediction of each run (`pippy sim --dp 2 --dp-sync ... [--zero1]`'s expected_step_us: steps back to
# back, each drawn with the profile's step-to-step noise, both replicas simulated) from that run's own
# profile, as bench/fidelity.sh predicts (every replica's trace: each action's work alone on the CPU it
# shared with its twin replica, parameter bytes, the pipeline's links and the replicas' link from timed
# all-reduces, and the mesh's shared CPUs): this VM's speed drifts by 10-40% between runs minutes apart,
# more than the model's error. The error is (predicted - measured) / measured, run by run.
# The last two columns are the mean REDUCE_GRAD (a stage's collectives over its replicas, each replica's
# posting to done) in the first round's trace (steps after the first) and in the simulator's
# (bench/reduce_grad.py).
# The processes run under `pippy run --bind-cores` (round-robin: the same stage of both replicas on one
# CPU, the binding `bench/dp_binding.sh` found fastest; each compute thread yields to its transport
# threads), as bench/fidelity.sh runs 3 and 4 processes. BIND=0 leaves them unbound: the kernel then
# moves 4 compute threads and their transport threads over 2 cores, a woken receiver waits for a time
# slice (waits of 0.8-1.4 ms per transfer against 0.06 ms probed), and the simulator, which then ran one
# replica on cores of its own, predicted 10-42% under.
set -euo pipefail
build=$(cd "$1" && pwd)
rounds=${2:-3}
pippy=$build/tools/pippy mynetwork=$build/examples/mynetwork
bind=(--bind-cores)
[[ ${BIND:-1} == 0 ]] && bind=()
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2054 # the commas are one argument's
model=(--in-dim 512 --dims 1024,1024,1024 --microbatches 8 --steps 20 --threads 1 --seed 1)
step_us() { sed -n 's/^measured step_us \([0-9.e+-]*\).*/\1/p' "$1"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
modes=(overlap at-step zero1)
flags() { case $1 in zero1) echo "--dp-sync overlap --zero1" ;; *) echo "--dp-sync $1" ;; esac; }
printf "| schedule | mode | measured ms (median) | rounds | predicted ms (median) | error (median, min..max) | REDUCE_GRAD ms measured | predicted |\n"
printf "|---|---|---|---|---|---|---|---|\n"
for s in 1f1b interleaved-1f1b; do
  v=1
  [[ $s == interleaved-1f1b ]] && v=2
  declare -A runs=() predictions=() errors=()
  for ((k = 0; k < rounds; ++k)); do
    for mode in "${modes[@]}"; do
      tag="$tmp/$s-$mode-$k"
      # shellcheck disable=SC2046 # flags are words
      "$pippy" run --nproc 4 "${bind[@]}" -- "$mynetwork" "${model[@]}" --batch 128 --schedule "$s" --stages-per-rank $v --dp 2 \
        $(flags "$mode") --profile "$tag.json" --trace "$tag-trace.json" >"$tag.log" 2>&1
      measured=$(step_us "$tag.log")
      # shellcheck disable=SC2046
      predicted=$("$pippy" sim --schedule "$s" --ranks 2 --stages-per-rank $v --microbatches 8 --cost-file "$tag.json" \
        --dp 2 $(flags "$mode") --json --trace "$tag-predicted.json" |
        awk -F': ' '/"expected_step_us"/ {gsub(/,/, "", $2); print $2}')
      runs[$mode]+="$measured " predictions[$mode]+="$predicted "
      errors[$mode]+="$(awk -v p="$predicted" -v m="$measured" 'BEGIN {printf "%.1f", 100 * (p - m) / m}') "
    done
  done
  for mode in "${modes[@]}"; do
    read -r sum_measured sum_predicted < <(python3 "$(dirname "$0")/reduce_grad.py" "$tmp/$s-$mode-0-trace.json" \
      "$tmp/$s-$mode-0-predicted.json" | awk '/^mean REDUCE_GRAD ms/ {print $5, $7}')
    printf "| %s | %s | %.1f | %s| %.1f | %+.1f%% (%s..%s) | %.2f | %.2f |\n" "$s" "$mode" \
      "$(median <<<"${runs[$mode]}" | awk '{print $1 / 1000}')" \
      "$(for x in ${runs[$mode]}; do awk -v x="$x" 'BEGIN {printf "%.1f ", x / 1000}'; done)" \
      "$(median <<<"${predictions[$mode]}" | awk '{print $1 / 1000}')" "$(median <<<"${errors[$mode]}")" \
      "$(tr ' ' '\n' <<<"${errors[$mode]}" | grep . | sort -g | head -1)" "$(tr ' ' '\n' <<<"${errors[$mode]}" | grep . | sort -g | tail -1)" \
      "$sum_measured" "$sum_predicted"
  done
  unset runs predictions errors
done

#!/usr/bin/env bash
# live_bench.sh BUILD_DIR [ROUNDS]: what publishing a training job live costs its steps (issue 15).
# MyNetwork, 1f1b, batch 128 in 8 micro-batches, 40 steps on 2 processes, run in turn ROUNDS times (default
# 5) each way, in an order rotated every round: without --live; with --live 0 and no viewer; with --live 0 and a slow viewer (connects,
# never reads: the publisher's queue and the socket fill up until the viewer is dropped); with --live to a
# file. Each run's number is the runtime's `measured step_us` (steps after the first); the table gives the
# median of the rounds, the median of each round's ratio to that round's run without --live (pair by pair:
# the VM's speed drifts between rounds), the ratio of the medians, and the CPU the feed's own threads used
# on its busiest rank over the step time (the runtime prints it; the median of the rounds). PIPPY_RUN_OPTS adds options to `pippy run`
# (e.g. --bind-cores); LIVE_STEPS the steps of each run (40).
set -euo pipefail
build=$(cd "$1" && pwd)
rounds=${2:-5}
pippy=$build/tools/pippy mynetwork=$build/examples/mynetwork
py=$("$(dirname "$0")"/../scripts/pyenv.sh)/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; kill $(jobs -p) 2>/dev/null || true' EXIT
read -r -a run_opts <<<"${PIPPY_RUN_OPTS:-}" # words, as the shell would split them
args=(--schedule 1f1b --microbatches 8 --batch 128 --steps "${LIVE_STEPS:-40}" --threads 1 --seed 1)
step_us() { sed -n 's/^measured step_us \([0-9.e+-]*\).*/\1/p' "$1"; }
# The feed's own threads' CPU a step, on its busiest rank, over the step: what publishing takes, read
# off each rank's "live: rank R's feed threads used X us of CPU over N steps" (free of the VM's drift).
feed_cpu() {
  awk -v step="$(step_us "$1")" '/feed threads used/ {x = $7 / $12 / step; if (x > m) m = x} END {print m + 0}' "$1"
}
slow_viewer() { # connects to the port rank 0 prints, then sleeps without reading
  "$py" - "$1" <<'PY' &
import re, socket, sys, time
deadline = time.time() + 60
while time.time() < deadline:
    m = re.search(r"live: publishing on 127\.0\.0\.1:(\d+)", open(sys.argv[1]).read())
    if m:
        s = socket.create_connection(("127.0.0.1", int(m.group(1))))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        time.sleep(120)
        break
    time.sleep(0.01)
PY
}
declare -A runs cpu
modes=(none absent slow file)
for ((k = 0; k < rounds; ++k)); do
  # Each round starts one mode later: a run's place in the round (right after another, or first) falls on
  # every mode alike.
  for ((j = 0; j < ${#modes[@]}; ++j)); do
    mode=${modes[$(((j + k) % ${#modes[@]}))]}
    log=$tmp/$mode-$k.log
    case $mode in
    none) "$pippy" run --nproc 2 "${run_opts[@]}" -- "$mynetwork" "${args[@]}" >"$log" 2>&1 ;;
    absent) "$pippy" run --nproc 2 "${run_opts[@]}" -- "$mynetwork" "${args[@]}" --live 0 >"$log" 2>&1 ;;
    slow)
      : >"$log"
      slow_viewer "$log"
      viewer=$!
      "$pippy" run --nproc 2 "${run_opts[@]}" -- "$mynetwork" "${args[@]}" --live 0 >"$log" 2>&1
      kill $viewer 2>/dev/null || true ;;
    file) "$pippy" run --nproc 2 "${run_opts[@]}" -- "$mynetwork" "${args[@]}" --live "$tmp/live.jsonl" >"$log" 2>&1 ;;
    esac
    runs[$mode]+="$(step_us "$log") "
    cpu[$mode]+="$(feed_cpu "$log") "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
base=$(median <<<"${runs[none]}")
read -ra base_runs <<<"${runs[none]}"
printf "| --live | median step ms | vs without, pair by pair (median) | ratio of medians | feed threads' CPU, busiest rank (median) | runs (ms) |\n|---|---|---|---|---|---|\n"
for mode in none absent slow file; do
  m=$(median <<<"${runs[$mode]}")
  read -ra mine <<<"${runs[$mode]}"
  paired=$(for ((k = 0; k < ${#mine[@]}; ++k)); do awk -v x="${mine[$k]}" -v b="${base_runs[$k]}" 'BEGIN {print x / b}'; done | median)
  c=$(median <<<"${cpu[$mode]}")
  printf "| %s | %.2f | %.3f | %.3f | %s | %s |\n" "$mode" "$(awk -v x="$m" 'BEGIN {print x / 1000}')" "$paired" \
    "$(awk -v x="$m" -v b="$base" 'BEGIN {print x / b}')" "$(awk -v x="$c" 'BEGIN {printf "%.2f%% of a step", 100 * x}')" \
    "$(for v in ${runs[$mode]}; do awk -v x="$v" 'BEGIN {printf "%.1f ", x / 1000}'; done)"
done

#!/usr/bin/env bash
# dp_binding.sh BUILD_DIR [ROUNDS]: which CPUs pp=2 x dp=2 should take on a 2-CPU machine. MyNetwork
# (512 -> 1024 -> 1024 -> 1024 -> 10, batch 128 in 8 micro-batches, 20 steps, 1F1B, 1 thread) on 4
# processes started by hand as torchrun would (RANK, WORLD_SIZE, MASTER_ADDR/PORT), each pinned with
# `taskset` and its compute thread yielding (PIPPY_COMPUTE_YIELDS=1, as `pippy run --bind-cores` sets):
# round-robin (global ranks 0 1 2 3 on CPUs 0 1 0 1: `pippy run --bind-cores`'s, the same stage of both
# replicas on one CPU) against contiguous blocks (CPUs 0 0 1 1: a replica's two stages on one CPU), in
# turn ROUNDS (3) times. Prints each run's `measured step_us` in ms.
set -euo pipefail
build=$(cd "$1" && pwd)
rounds=${2:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
port=$((29700 + RANDOM % 200))
run() { # CPUS (4, comma-separated)
  local cpus pids=()
  IFS=, read -r -a cpus <<<"$1"
  port=$((port + 1))
  for r in 0 1 2 3; do
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=4 LOCAL_WORLD_SIZE=4 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port PIPPY_COMPUTE_YIELDS=1 \
      taskset -c "${cpus[$r]}" "$build/examples/mynetwork" --dp 2 --in-dim 512 --dims 1024,1024,1024 --microbatches 8 \
      --steps 20 --threads 1 --seed 1 --schedule 1f1b >"$tmp/rank$r.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}" || { echo "error: a rank failed (CPUs $1):" >&2; cat "$tmp"/rank*.log >&2; exit 1; }
  awk '/^measured step_us/ {printf "%.1f", $3 / 1000}' "$tmp"/rank*.log
}
printf "%-6s %14s %14s\n" round round-robin_ms blocks_ms
for ((i = 1; i <= rounds; i++)); do
  printf "%-6s %14s %14s\n" "$i" "$(run 0,1,0,1)" "$(run 0,0,1,1)"
done

#!/usr/bin/env bash
# job_guard.sh PIPPY MYNETWORK: a job's identity, agreement and liveness (issue 14, item 9).
# 1. Two ranks started by hand with different --steps and --seed refuse to start: both exit 2, naming rank 1
#    and each differing option with both values.
# 2. A second job given the first one's --master-port fails within 5 s saying whose store it reached; the
#    first job finishes undisturbed.
# 3. A stopped rank (SIGSTOP) under the default c10d timeout (60 s) is named by its peers through the
#    heartbeat (--heartbeat-timeout 4) in 4 s, the job stops within 15 s, and the launcher blames it, not the peer that exited first.
# 4. SIGKILL to the launcher takes its ranks with it.
set -uo pipefail
pippy=$1 mynetwork=$2
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  pkill -KILL -f "$tmp/tag" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
small=(--microbatches 4 --batch 16 --dims 32 --in-dim 16)

# 1. Settings.
port=$(free_port)
MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 PIPPY_JOB_ID=guard RANK=0 \
  "$mynetwork" "${small[@]}" --steps 4 --seed 1 >"$tmp/r0.log" 2>&1 &
r0=$!
pids+=("$r0")
MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 PIPPY_JOB_ID=guard RANK=1 \
  timeout 60 "$mynetwork" "${small[@]}" --steps 5 --seed 2 >"$tmp/r1.log" 2>&1
rc1=$?
wait "$r0"
rc0=$?
want="rank 1 was started with other settings than rank 0: steps 5 (rank 0: 4), seed 2 (rank 0: 1)"
for r in 0 1; do
  grep -qF "error: rank $r: $want" "$tmp/r$r.log" || { cat "$tmp/r$r.log"; fail "rank $r did not name rank 1's steps and seed"; }
done
((rc0 == 2 && rc1 == 2)) || fail "exit statuses $rc0 $rc1, wanted 2 2"

# 2. Two jobs on one port.
port=$(free_port)
"$pippy" run --nproc 2 --master-port "$port" -- "$mynetwork" "${small[@]}" --steps 300 --export-dir "$tmp/tag1" \
  >"$tmp/first.log" 2>&1 &
first=$!
pids+=("$first")
for _ in $(seq 100); do grep -q "^step 0 loss" "$tmp/first.log" && break; sleep 0.1; done
grep -q "^step 0 loss" "$tmp/first.log" || { cat "$tmp/first.log"; fail "the first job did not start"; }
start=$(date +%s%N)
"$pippy" run --nproc 2 --master-port "$port" -- "$mynetwork" "${small[@]}" --steps 300 >"$tmp/second.log" 2>&1 &&
  fail "the second job on the same port exited 0"
ms=$((($(date +%s%N) - start) / 1000000))
grep -qE "error: rank 1: the store at 127.0.0.1:$port belongs to job '[^']+', not to this job" "$tmp/second.log" ||
  { cat "$tmp/second.log"; fail "the second job's rank 1 did not say whose store it reached"; }
grep -q "error: rank 0: cannot serve the rendezvous store at 127.0.0.1:$port: the port is in use" "$tmp/second.log" ||
  { cat "$tmp/second.log"; fail "the second job's rank 0 did not say the port is taken"; }
((ms < 5000)) || fail "the second job took ${ms} ms to fail"
wait "$first" || { cat "$tmp/first.log"; fail "the first job was disturbed"; }
grep -q "^step 299 loss" "$tmp/first.log" || fail "the first job did not finish its steps"
echo "second job refused in ${ms} ms"

# 3. A hung rank, named by the heartbeat long before the 60 s c10d timeout.
start=$(date +%s%N)
"$pippy" run --nproc 3 --grace 3 -- "$mynetwork" "${small[@]}" --steps 50 --heartbeat-timeout 4 --fail-rank 1 \
  --fail-step 2 --fail-how stop >"$tmp/hung.log" 2>&1 && fail "the job with a hung rank exited 0"
ms=$((($(date +%s%N) - start) / 1000000))
grep -qE "error: rank 0: rank 1 is not responding: no heartbeat for [4-9]\.[0-9] s" "$tmp/hung.log" ||
  { cat "$tmp/hung.log"; fail "rank 0 did not name rank 1"; }
grep -q "pippy run: failed: rank 1 caused it" "$tmp/hung.log" || { cat "$tmp/hung.log"; fail "the launcher blamed another rank"; }
((ms < 15000)) || fail "naming the hung rank and stopping the job took ${ms} ms"
echo "hung rank named and the job stopped in ${ms} ms"

# 4. The launcher killed: its ranks die with it.
"$pippy" run --nproc 2 -- "$mynetwork" "${small[@]}" --steps 100000 --export-dir "$tmp/tag4" >"$tmp/orphans.log" 2>&1 &
launcher=$!
pids+=("$launcher")
for _ in $(seq 100); do grep -q "^step 0 loss" "$tmp/orphans.log" && break; sleep 0.1; done
(($(pgrep -c -f "$tmp/tag4") == 3)) || fail "expected the launcher and 2 ranks running"
kill -KILL "$launcher"
wait "$launcher" 2>/dev/null
for _ in $(seq 50); do (($(pgrep -c -f "$tmp/tag4") == 0)) && break; sleep 0.1; done
(($(pgrep -c -f "$tmp/tag4") == 0)) || fail "ranks outlived their launcher: $(pgrep -a -f "$tmp/tag4")"
echo "OK"

#!/usr/bin/env bash
# checkpoint_zero1.sh PIPPY MYNETWORK: checkpoints of pp=2 x dp=2 with ZeRO-1 (SGD with momentum: the
# momentum is the sharded state). Every replica writes its own shard of each stage (stage-S.replica-D.pt).
# 1. A run killed at step 5 and resumed with --resume prints the uninterrupted run's losses for steps 4..7
#    and ends with bit-identical parameters.
# 2. Resuming those shards without --zero1, or with another --dp, and a plain checkpoint with --zero1, are
#    errors naming the manifest or the shard.
set -uo pipefail
pippy=$1 mynetwork=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
common=(--schedule 1f1b --microbatches 2 --batch 32 --dims 64,32 --in-dim 32 --timeout 10)
# shellcheck source=resume_common.sh
source "$(dirname "$0")/resume_common.sh"
run() { # run OUT NPROC ARGS...: pippy run, its output in OUT; returns its status
  local out=$1 n=$2
  shift 2
  "$pippy" run --nproc "$n" --grace 2 -- "$mynetwork" "${common[@]}" --steps "${steps:-8}" "$@" >"$out" 2>&1
}

run "$tmp/whole.log" 4 --dp 2 --zero1 --export-dir "$tmp/whole" || { cat "$tmp/whole.log"; fail "uninterrupted run failed"; }
ck=$tmp/ck
run "$tmp/killed.log" 4 --dp 2 --zero1 --checkpoint-dir "$ck" --checkpoint-every 2 --fail-rank 1 --fail-step 5 &&
  fail "the run with a killed rank exited 0"
[[ -f $ck/step-4/manifest.json ]] || { cat "$tmp/killed.log"; fail "no complete checkpoint at step 4"; }
files=$(cd "$ck/step-4" && ls stage-*.pt | tr '\n' ' ')
[[ $files == "stage-0.replica-0.pt stage-0.replica-1.pt stage-1.replica-0.pt stage-1.replica-1.pt " ]] ||
  fail "step 4 holds $files, wanted one shard per stage and replica"
python3 - "$ck/step-4/manifest.json" <<'PY' || fail "the manifest does not list the four shards with their replicas"
import json, sys
shards = json.load(open(sys.argv[1]))["shards"]
assert [(s["stage"], s["replica"]) for s in shards] == [(0, 0), (0, 1), (1, 0), (1, 1)], shards
PY
run "$tmp/resumed.log" 4 --dp 2 --zero1 --checkpoint-dir "$ck" --checkpoint-every 2 --resume --export-dir "$tmp/resumed" ||
  { cat "$tmp/resumed.log"; fail "resumed run failed"; }
expect_resumed "$ck" 4

# The shards need the same ZeRO-1 layout: without --zero1, the manifest says so.
steps=10 run "$tmp/plain.log" 4 --dp 2 --checkpoint-dir "$ck" --resume && fail "ZeRO-1 shards resumed without --zero1"
grep -q "error: .*$ck/step-8/manifest.json: stage [01]'s optimizer state is in ZeRO-1 shards, one per replica" "$tmp/plain.log" ||
  { cat "$tmp/plain.log"; fail "no error naming the manifest for ZeRO-1 shards without --zero1"; }
# 1 rank x 4 replicas over the same 2 stages would be another split; 2 x 3 is the same split with another
# layout: a replica without a shard, or a shard of another layout, is named.
steps=10 run "$tmp/dp3.log" 6 --dp 3 --zero1 --checkpoint-dir "$ck" --resume && fail "ZeRO-1 shards resumed with another --dp"
grep -qE "error: .*($ck/step-8/manifest.json: no shard for stage [01] of replica 2|$ck/step-8/stage-[01]\.replica-[01]\.pt: its ZeRO-1 optimizer shard is elements)" \
  "$tmp/dp3.log" || { cat "$tmp/dp3.log"; fail "no error naming the manifest or shard for another --dp"; }
# A plain data-parallel checkpoint holds each stage's whole state: not for --zero1.
rm -rf "$ck"
steps=2 run "$tmp/plain-ck.log" 4 --dp 2 --checkpoint-dir "$ck" --checkpoint-every 2 || { cat "$tmp/plain-ck.log"; fail "plain checkpoint"; }
steps=4 run "$tmp/mixed.log" 4 --dp 2 --zero1 --checkpoint-dir "$ck" --resume && fail "a plain checkpoint resumed with --zero1"
grep -q "error: .*$ck/step-2/manifest.json: stage [01]'s optimizer state is whole, not in ZeRO-1 shards: resume without --zero1" \
  "$tmp/mixed.log" || { cat "$tmp/mixed.log"; fail "no error naming the manifest for a whole state with --zero1"; }
echo OK

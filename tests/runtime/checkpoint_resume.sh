#!/usr/bin/env bash
# checkpoint_resume.sh PIPPY MYNETWORK SCHEDULE [STAGES_PER_RANK]: checkpoints of a 2-rank MyNetwork run.
# 1. A run killed at step 5 (rank 1, SIGKILL) and resumed with --resume prints, for steps 4..7, the losses of
#    an uninterrupted run, and ends with bit-identical parameters (export-dir's final.rank*.pt compared with cmp).
# 2. Only the newest --checkpoint-keep checkpoints remain, each with its manifest.
# 3. A changed split (3 ranks), a missing shard and a corrupt shard are errors naming the manifest or the shard.
# 4. `pippy run --max-restarts 1` with the same failure finishes with the uninterrupted run's losses.
set -uo pipefail
pippy=$1 mynetwork=$2 schedule=$3 v=${4:-0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL ($schedule): $*"; exit 1; }
model=(--microbatches 4 --batch 32 --dims 64,32 --in-dim 32 --timeout 5)
common=(--schedule "$schedule" --stages-per-rank "$v" "${model[@]}")
stages=$((2 * (v > 0 ? v : 1)))
# shellcheck source=resume_common.sh
source "$(dirname "$0")/resume_common.sh"
run() { # run OUT NPROC ARGS...: pippy run, its output in OUT; returns its status
  local out=$1 n=$2
  shift 2
  "$pippy" run --nproc "$n" --grace 2 -- "$mynetwork" "${common[@]}" --steps "${steps:-8}" "$@" >"$out" 2>&1
}

run "$tmp/whole.log" 2 --export-dir "$tmp/whole" || { cat "$tmp/whole.log"; fail "uninterrupted run failed"; }
ck=$tmp/ck
run "$tmp/killed.log" 2 --checkpoint-dir "$ck" --checkpoint-every 2 --checkpoint-keep 2 --fail-rank 1 --fail-step 5 &&
  fail "the run with a killed rank exited 0"
[[ -f $ck/step-4/manifest.json ]] || { cat "$tmp/killed.log"; fail "no complete checkpoint at step 4"; }
[[ ! -e $ck/step-6/manifest.json ]] || fail "step 6 was committed although rank 1 died before writing it"
run "$tmp/resumed.log" 2 --checkpoint-dir "$ck" --checkpoint-every 2 --checkpoint-keep 2 --resume \
  --export-dir "$tmp/resumed" || { cat "$tmp/resumed.log"; fail "resumed run failed"; }
expect_resumed "$ck" 4
# Keep 2: step-6 and step-8 remain (step-2 and step-4 went), each complete.
[[ $(cd "$ck" && ls -d step-* | tr '\n' ' ') == "step-6 step-8 " ]] || fail "kept $(ls "$ck"), wanted step-6 step-8"

# Another schedule over the same split: GPipe on one rank per stage resumes from step 8 and runs steps 8 and 9
# with the losses of an uninterrupted run of 10 steps (to 1e-6: its micro-batches' gradients may sum in
# another order).
steps=10 run "$tmp/whole10.log" 2 || fail "uninterrupted run of 10 steps failed"
"$pippy" run --nproc "$stages" -- "$mynetwork" --schedule gpipe "${model[@]}" --steps 10 --checkpoint-dir "$ck" \
  --resume >"$tmp/gpipe.log" 2>&1 || { cat "$tmp/gpipe.log"; fail "resuming with gpipe failed"; }
join <(losses "$tmp/whole10.log") <(losses "$tmp/gpipe.log") |
  awk '{d = $2 - $3; if (d < 0) d = -d; if (d > 1e-6 * $2) bad = 1; n++} END {exit !(n == 2 && !bad)}' ||
  fail "gpipe's resumed losses differ: $(join <(losses "$tmp/whole10.log") <(losses "$tmp/gpipe.log") | tr '\n' ';')"
# Another split: 3 stages over a $stages-stage checkpoint.
"$pippy" run --nproc 3 -- "$mynetwork" --schedule 1f1b "${model[@]}" --steps 10 --checkpoint-dir "$ck" --resume >"$tmp/split.log" 2>&1 &&
  fail "resuming with another split exited 0"
grep -q "error: .*$ck/step-8/manifest.json: the checkpoint is of a split into" "$tmp/split.log" ||
  { cat "$tmp/split.log"; fail "no error naming the manifest for another split"; }
# A corrupt shard, then a missing one (--steps 10: step 8 is not the end).
printf 'x' | dd of="$ck/step-8/stage-1.pt" bs=1 seek=100 conv=notrunc status=none
steps=10 run "$tmp/corrupt.log" 2 --checkpoint-dir "$ck" --resume && fail "a corrupt shard was resumed from"
grep -q "error: .*$ck/step-8/stage-1.pt: checkpoint shard is corrupt" "$tmp/corrupt.log" ||
  { cat "$tmp/corrupt.log"; fail "no error naming the corrupt shard"; }
rm "$ck/step-8/stage-0.pt"
steps=10 run "$tmp/missing.log" 2 --checkpoint-dir "$ck" --resume && fail "a missing shard was resumed from"
grep -q "error: .*$ck/step-8/stage-0.pt: checkpoint shard of stage 0 is missing" "$tmp/missing.log" ||
  { cat "$tmp/missing.log"; fail "no error naming the missing shard"; }

# Restarts: the launcher stops both ranks when rank 1 dies at step 5 and starts them again; they resume.
rm -rf "$ck"
"$pippy" run --nproc 2 --grace 2 --max-restarts 1 -- "$mynetwork" "${common[@]}" --steps 8 --checkpoint-dir "$ck" \
  --checkpoint-every 2 --fail-rank 1 --fail-step 5 --export-dir "$tmp/restarted" >"$tmp/restart.log" 2>&1 ||
  { cat "$tmp/restart.log"; fail "the restarted job failed"; }
grep -q "pippy run: restarting all ranks (restart 1 of 1" "$tmp/restart.log" || fail "no restart"
diff <(losses "$tmp/whole.log") <(losses "$tmp/restart.log") || fail "restarted losses differ"
for f in "$tmp"/whole/final.rank*.pt; do
  cmp -s "$f" "$tmp/restarted/$(basename "$f")" || fail "restart: $(basename "$f") is not bit-identical"
done
echo "OK ($schedule)"

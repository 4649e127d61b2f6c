# Sourced by the checkpoint tests (checkpoint_resume.sh, checkpoint_zero1.sh); they define fail and tmp.
# losses LOG: "STEP LOSS" per step, the last line printed for it.
losses() { grep -E '^step [0-9]+ loss' "$1" | awk '{last[$2] = $4} END {for (s in last) print s, last[s]}' | sort -n; }
# expect_resumed CK STEP: $tmp/resumed.log resumed from CK/step-STEP, printed $tmp/whole.log's losses from
# STEP on, and exported ($tmp/resumed) the parameters $tmp/whole holds, bit for bit.
expect_resumed() {
  local ck=$1 step=$2 f
  grep -q "resumed from $ck/step-$step" "$tmp/resumed.log" || { cat "$tmp/resumed.log"; fail "did not resume from step $step"; }
  diff <(losses "$tmp/whole.log" | awk -v k="$step" '$1 >= k') <(losses "$tmp/resumed.log") ||
    fail "resumed losses differ from the uninterrupted run's"
  for f in "$tmp"/whole/final.rank*.pt; do
    cmp -s "$f" "$tmp/resumed/$(basename "$f")" || fail "$(basename "$f"): final parameters are not bit-identical"
  done
}

#!/usr/bin/env bash
# compare_losses_test.sh PIPPY: compare_losses.sh itself must fail on a wrong loss, a missing step, and on
# nan, -nan, inf and -inf (which no comparison may treat as equal to anything, themselves included). A fake
# trainer stands in for MyNetwork: launched by the real `pippy run`, it prints on its last rank the losses
# in $FAKE_UNSPLIT (1 process) or $FAKE_PIPELINED (more), whatever options it gets.
set -uo pipefail
pippy=$1
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/fake_trainer" <<'SH'
#!/bin/sh
[ "$RANK" -eq $((WORLD_SIZE - 1)) ] || exit 0
if [ "$WORLD_SIZE" -eq 1 ]; then losses=$FAKE_UNSPLIT; else losses=$FAKE_PIPELINED; fi
k=0
for l in $losses; do echo "step $k loss $l"; k=$((k + 1)); done
SH
chmod +x "$tmp/fake_trainer"
bad=0
# expect VERDICT UNSPLIT PIPELINED [REGEX]: compare_losses.sh passes (ok) or fails (fail), and its output
# matches REGEX (the reason it gives).
expect() {
  local verdict=$1 unsplit=$2 pipelined=$3 reason=${4:-}
  out=$(FAKE_UNSPLIT=$unsplit FAKE_PIPELINED=$pipelined "$here/compare_losses.sh" "$pippy" "$tmp/fake_trainer" 2 1f1b 2>&1)
  rc=$?
  local got=ok
  ((rc == 0)) || got=fail
  if [[ $got != "$verdict" ]] || ! grep -qE -- "$reason" <<<"$out"; then
    echo "FAIL: unsplit [$unsplit] vs pipelined [$pipelined]: compare_losses.sh said $got (exit $rc), expected $verdict${reason:+ matching '$reason'}:"
    sed 's/^/    /' <<<"$out"
    bad=1
  else
    echo "ok: [$unsplit] vs [$pipelined]: $got"
  fi
}
expect ok "2.5 2.25 2" "2.5 2.25 2" "^OK: losses agree"
expect ok "2.5 2.25 2" "2.500001 2.25 2.0000" "^OK: losses agree"
expect ok "0 -1e-3 1.5e+2" "0 -1e-3 150" "^OK: losses agree"
expect fail "2.5 2.25 2" "2.5 2.25 2.001" "FAIL: step 2: 2 vs 2.001"
expect fail "2.5 2.25 2" "2.5 2.25" "expected 3 loss lines"
for x in nan -nan NaN inf -inf; do
  expect fail "2.5 2.25 2" "2.5 $x 2" "FAIL: step 1: a loss that is not a finite number"
  expect fail "2.5 $x 2" "2.5 2.25 2" "FAIL: step 1: a loss that is not a finite number"
  expect fail "$x $x $x" "$x $x $x" "FAIL: step 0: a loss that is not a finite number"
done
((bad == 0)) || exit 1
echo "OK: compare_losses.sh rejects wrong, missing and non-finite losses"

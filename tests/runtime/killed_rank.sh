#!/usr/bin/env bash
# killed_rank.sh PIPPY MYNETWORK: rank 1 of 3 kills itself at step 1; the others must exit non-zero
# naming rank 1 within the c10d timeout (5 s here), and `pippy run` must fail naming it too.
source "$(dirname "$0")/failing_rank.sh"
run_failing 30 "$@"
grep -q "pippy run: rank 1 .*killed by signal 9" <<<"$out" || fail "launcher did not name rank 1"
for r in 0 2; do
  grep -qE "error: rank $r: .*rank 1" <<<"$out" || fail "rank $r did not name rank 1"
  grep -qE "pippy run: rank $r .*exited with code [1-9]" <<<"$out" || fail "rank $r did not exit non-zero by itself"
done
(( elapsed < 25 )) || fail "took ${elapsed}s (c10d timeout 5 s)"
echo "OK"

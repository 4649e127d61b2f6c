#!/usr/bin/env bash
# hung_rank.sh PIPPY MYNETWORK: rank 1 of 3 stops (SIGSTOP) at step 1 and never answers; its peers must
# give up within the c10d timeout (5 s) naming rank 1, and `pippy run` must then stop everything.
source "$(dirname "$0")/failing_rank.sh"
run_failing 2 --fail-how stop "$@"
grep -qE "error: rank (0|2): .*rank 1" <<<"$out" || fail "no surviving rank named rank 1"
grep -q "pippy run: stopping" <<<"$out" || fail "launcher did not stop the hung rank"
grep -q "pippy run: failed: rank 1 caused it" <<<"$out" || fail "the launcher blamed another rank than the hung one"
(( elapsed < 40 )) || fail "took ${elapsed}s"
echo "OK"

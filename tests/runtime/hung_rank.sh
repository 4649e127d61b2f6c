#!/usr/bin/env bash
# hung_rank.sh PIPPY MYNETWORK: rank 1 of 3 stops (SIGSTOP) at step 1 and never answers; its peers must
# give up within the c10d timeout (5 s) naming rank 1, and `pippy run` must then stop everything.
set -uo pipefail
pippy=$1 mynetwork=$2
shift 2
start=$(date +%s)
out=$("$pippy" run --nproc 3 --grace 2 -- "$mynetwork" --steps 4 --timeout 5 --fail-rank 1 --fail-step 1 \
  --fail-how stop "$@" 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out"
echo "exit status $rc after ${elapsed}s"
fail() { echo "FAIL: $*"; exit 1; }
[[ $rc -ne 0 ]] || fail "pippy run exited 0"
grep -qE "error: rank (0|2): .*rank 1" <<<"$out" || fail "no surviving rank named rank 1"
grep -q "pippy run: stopping" <<<"$out" || fail "launcher did not stop the hung rank"
(( elapsed < 40 )) || fail "took ${elapsed}s"
echo "OK"

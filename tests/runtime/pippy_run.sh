#!/usr/bin/env bash
# pippy_run.sh PIPPY: the launcher's contract without torch: the environment each rank gets, output
# passing through, a failing rank named with its exit code, a program that cannot start.
set -uo pipefail
pippy=$1
fail() { echo "FAIL: $*"; exit 1; }
out=$("$pippy" run --nproc 3 -- sh -c 'echo "rank=$RANK world=$WORLD_SIZE local=$LOCAL_RANK addr=$MASTER_ADDR port=$MASTER_PORT"' 2>&1) ||
  fail "3 healthy ranks: exit status $?"
echo "$out"
for r in 0 1 2; do
  grep -qE "^rank=$r world=3 local=$r addr=127.0.0.1 port=[0-9]+$" <<<"$out" || fail "rank $r's environment"
done
[[ $(grep -oE 'port=[0-9]+' <<<"$out" | sort -u | wc -l) -eq 1 ]] || fail "ranks got different ports"
out=$("$pippy" run --nproc 2 --grace 5 -- sh -c '[ "$RANK" = 1 ] && exit 7; exit 0' 2>&1)
rc=$?
echo "$out"
[[ $rc -eq 7 ]] || fail "exit status $rc, expected rank 1's 7"
grep -q "pippy run: rank 1 (pid [0-9]*) exited with code 7" <<<"$out" || fail "rank 1 not named"
out=$("$pippy" run --nproc 2 --grace 1 -- /nonexistent/program 2>&1)
rc=$?
echo "$out"
[[ $rc -ne 0 ]] || fail "a missing program exited 0"
grep -q "cannot start '/nonexistent/program'" <<<"$out" || fail "missing program not reported"
# Rank 1 blocks for good (opening a FIFO nobody writes) until the launcher stops it.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/never"
out=$("$pippy" run --nproc 2 --grace 1 -- sh -c '[ "$RANK" = 0 ] && kill -9 $$; exec cat "$0"' "$tmp/never" 2>&1)
rc=$?
echo "$out"
[[ $rc -eq 137 ]] || fail "exit status $rc after a SIGKILL, expected 137"
grep -q "pippy run: stopping 1 remaining rank" <<<"$out" || fail "the blocked rank was not stopped"
grep -q "pippy run: rank 1 (pid [0-9]*) was killed by signal 15 " <<<"$out" || fail "rank 1 was not stopped with SIGTERM"
echo OK

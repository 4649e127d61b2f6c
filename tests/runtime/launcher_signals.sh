#!/usr/bin/env bash
# launcher_signals.sh PIPPY: `pippy run` stopping its ranks.
# 1. SIGINT, then SIGTERM, to the launcher: SIGTERM forwarded to every rank (each is killed by signal 15),
#    exit status 128 + the signal (130, 143).
# 2. A rank that ignores SIGTERM (it reports the SIGTERM it got) is killed with SIGKILL afterwards.
# 3. A rank fails: the others get --grace, then SIGTERM; one that ignores it is then killed with SIGKILL,
#    and the exit status is the failing rank's.
# No sleeps for synchronisation: ranks report on a FIFO ("ready R PID", "term R") and the launcher's exit
# status comes on another; the test blocks reading them. A rank's idle work is a blocking open of a FIFO
# nobody writes.
set -uo pipefail
pippy=$1
tmp=$(mktemp -d)
launcher= rank_pids=()
cleanup() { # on any exit: nothing of ours outlives the test, even when the launcher failed to stop it
  [[ -n $launcher ]] && kill -KILL "$launcher" 2>/dev/null
  for p in "${rank_pids[@]}"; do kill -KILL -- -"$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [[ -f $tmp/out ]] && sed 's/^/    /' "$tmp/out"; exit 1; }
mkfifo "$tmp/events" "$tmp/launcher" "$tmp/never"
# Held open for reading and writing: no open ever blocks, reads wait for lines. 3: the ranks' reports
# ("ready R PID", "term R"); 4: the launcher's pid, then its exit status.
exec 3<>"$tmp/events" 4<>"$tmp/launcher"

# expect_line WANT: the next line from the ranks is WANT (30 s at most: a hung launcher fails, not hangs).
expect_line() {
  local got
  read -r -t 30 -u 3 got || fail "no '$1' from the ranks within 30 s"
  [[ $got == "$1" ]] || fail "expected '$1' from the ranks, got '$got'"
}
# expect_ready N: "ready R PID" from ranks 0..N-1, in any order; remembers the pids for the cleanup.
expect_ready() {
  local n=$1 got ranks=()
  rank_pids=()
  for ((i = 0; i < n; i++)); do
    read -r -t 30 -u 3 got || fail "only $i of $n ranks ready within 30 s"
    [[ $got =~ ^ready\ ([0-9]+)\ ([0-9]+)$ ]] || fail "expected 'ready R PID', got '$got'"
    ranks+=("${BASH_REMATCH[1]}") rank_pids+=("${BASH_REMATCH[2]}")
  done
  [[ $(printf '%s\n' "${ranks[@]}" | sort -n | tr '\n' ' ') == "$(seq -s ' ' 0 $((n - 1))) " ]] ||
    fail "ready lines from ranks ${ranks[*]}"
}
# A rank: reports ready, then blocks for good (FAIL_RANK exits 5 instead). IGNORE_TERM_RANK: that rank
# reports each SIGTERM and goes on blocking.
rank_program='
ev=$1 never=$2
if [ "$RANK" = "${IGNORE_TERM_RANK:-}" ]; then
  trap "echo term $RANK >$ev" TERM
  echo ready $RANK $$ >$ev
  while :; do read -r _ 2>/dev/null <$never; done # a signal interrupts the open: the trap, then block again
fi
echo ready $RANK $$ >$ev
[ "$RANK" = "${FAIL_RANK:-}" ] && exit 5
exec cat $never'
launch() { # launch NPROC [pippy run options]: in the background, output to $tmp/out; sets launcher
  local n=$1
  shift
  ( "$pippy" run --nproc "$n" "$@" -- sh -c "$rank_program" rank "$tmp/events" "$tmp/never" >"$tmp/out" 2>&1 &
    echo $! >&4
    wait $!
    echo $? >&4 ) &
  read -r -t 30 -u 4 launcher || fail "the launcher did not start"
}
finish() { # waits (60 s at most) for the launcher to exit; sets rc
  read -r -t 60 -u 4 rc || fail "the launcher did not exit within 60 s"
  launcher=
  echo "--- exit status $rc"; cat "$tmp/out"
}

for sig in INT TERM; do
  echo "== SIG$sig to the launcher"
  launch 3 --grace 30
  expect_ready 3
  kill -"$sig" "$launcher"
  finish
  want=$((128 + $(kill -l "$sig")))
  ((rc == want)) || fail "exit status $rc after SIG$sig, expected $want"
  grep -q "pippy run: got signal $(kill -l "$sig")" "$tmp/out" || fail "the signal was not reported"
  grep -q "pippy run: stopping 3 remaining rank(s)" "$tmp/out" || fail "the ranks were not stopped"
  for r in 0 1 2; do
    grep -q "pippy run: rank $r (pid [0-9]*) was killed by signal 15 " "$tmp/out" || fail "rank $r did not get SIGTERM"
  done
done

echo "== SIGTERM to the launcher, rank 1 ignores it"
IGNORE_TERM_RANK=1 launch 3 --grace 30
expect_ready 3
kill -TERM "$launcher"
expect_line "term 1" # it got the SIGTERM first
finish
((rc == 143)) || fail "exit status $rc, expected 143"
for r in 0 2; do
  grep -q "pippy run: rank $r (pid [0-9]*) was killed by signal 15 " "$tmp/out" || fail "rank $r did not get SIGTERM"
done
grep -q "pippy run: rank 1 (pid [0-9]*) was killed by signal 9 " "$tmp/out" || fail "rank 1 was not killed with SIGKILL"

echo "== rank 0 fails, rank 1 ignores SIGTERM: --grace, then SIGTERM, then SIGKILL"
FAIL_RANK=0 IGNORE_TERM_RANK=1 launch 2 --grace 1
expect_ready 2
expect_line "term 1" # after the grace: SIGTERM, which it ignores
finish
((rc == 5)) || fail "exit status $rc, expected rank 0's 5"
grep -q "pippy run: rank 0 (pid [0-9]*) exited with code 5" "$tmp/out" || fail "rank 0 not named"
grep -q "pippy run: waiting up to 1 s for the other ranks to stop" "$tmp/out" || fail "no grace announced"
grep -q "pippy run: stopping 1 remaining rank(s)" "$tmp/out" || fail "rank 1 was not stopped"
grep -q "pippy run: rank 1 (pid [0-9]*) was killed by signal 9 " "$tmp/out" || fail "rank 1 was not killed with SIGKILL"
grep -q "pippy run: failed: rank 0 was the first to fail" "$tmp/out" || fail "no summary naming rank 0"
echo "OK: the launcher forwards SIGINT/SIGTERM as SIGTERM, escalates to SIGKILL, exits as documented"

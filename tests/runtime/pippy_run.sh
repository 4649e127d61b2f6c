#!/usr/bin/env bash
# pippy_run.sh PIPPY: the launcher's contract without torch: the environment each rank gets, output
# passing through, a failing rank named with its exit code, a program that cannot start, and --bind-cores
# (each rank on its own share of the launcher's CPUs, PIPPY_COMPUTE_YIELDS=1).
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
# The chosen port is held for the job from its choice on: no other process can bind it while the job runs,
# and only rank 0 gets the listening socket to serve the store on (PIPPY_MASTER_LISTEN_FD, an open fd).
# Each line goes out in one write(2) (under PIPE_BUF, so atomic): the two ranks share the launcher's
# stdout, and print() may split a line into several writes where Python runs unbuffered.
bind_probe='import os, socket
def say(*words):
    os.write(1, (" ".join(map(str, words)) + "\n").encode())
s = socket.socket()
try:
    s.bind(("0.0.0.0", int(os.environ["MASTER_PORT"])))
    say("rank", os.environ["RANK"], "could bind the port")
except OSError:
    say("rank", os.environ["RANK"], "port held")
fd = os.environ.get("PIPPY_MASTER_LISTEN_FD")
if fd is not None:
    k = socket.socket(fileno=os.dup(int(fd)))
    say("rank", os.environ["RANK"], "listen fd on port", k.getsockname()[1] == int(os.environ["MASTER_PORT"]))'
out=$("$pippy" run --nproc 2 -- python3 -c "$bind_probe" 2>&1) || fail "the port probe: exit status $?"
echo "$out"
grep -q "rank 0 port held" <<<"$out" && grep -q "rank 1 port held" <<<"$out" || fail "the job's port could be bound"
grep -q "rank 0 listen fd on port True" <<<"$out" || fail "rank 0 did not get the port's listening socket"
! grep -q "rank 1 listen fd" <<<"$out" || fail "rank 1 got the listening socket"
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
# --bind-cores: with as many ranks as CPUs each rank gets one CPU of its own; with more ranks, one each in
# turn. Without the flag a rank keeps every CPU and gets no PIPPY_COMPUTE_YIELDS.
cpus() { python3 -c 'import os; print(",".join(map(str, sorted(os.sched_getaffinity(0)))))'; }
allowed=$(cpus)
n=$(tr ',' '\n' <<<"$allowed" | wc -l)
show='echo "rank=$RANK yields=${PIPPY_COMPUTE_YIELDS:-unset} cpus=$(python3 -c "import os; print(sorted(os.sched_getaffinity(0)))")"'
out=$("$pippy" run --nproc "$n" --bind-cores -- sh -c "$show" 2>&1) || fail "--bind-cores: exit status $?"
echo "$out"
[[ $(grep -c "yields=1 cpus=\[[0-9]*\]$" <<<"$out") -eq $n ]] || fail "--bind-cores: each of $n ranks should have one CPU and yields=1"
[[ $(grep -oE 'cpus=\[[0-9]+\]' <<<"$out" | sort -u | wc -l) -eq $n ]] || fail "--bind-cores: ranks share a CPU"
out=$("$pippy" run --nproc $((n + 1)) --bind-cores -- sh -c "$show" 2>&1) || fail "--bind-cores with more ranks: exit status $?"
echo "$out"
[[ $(grep -c "cpus=\[[0-9]*\]$" <<<"$out") -eq $((n + 1)) ]] || fail "--bind-cores: one CPU each when ranks outnumber CPUs"
out=$("$pippy" run --nproc 1 -- sh -c "$show" 2>&1)
grep -q "yields=unset cpus=\[${allowed//,/, }\]$" <<<"$out" || fail "without --bind-cores: $out"
echo OK

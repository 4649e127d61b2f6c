#!/usr/bin/env bash
# Sourced by killed_rank.sh and hung_rank.sh (PIPPY MYNETWORK [ARGS...]): `pippy run` of mynetwork on 3
# ranks whose rank 1 fails at step 1, c10d timeout 5 s.
set -uo pipefail
pippy=$1 mynetwork=$2
shift 2
fail() { echo "FAIL: $*"; exit 1; }
# run_failing GRACE MYNETWORK_ARGS...: runs it, prints its output and sets out, rc and elapsed; fails if
# it exited 0.
run_failing() {
  local grace=$1 start
  shift
  start=$(date +%s)
  out=$("$pippy" run --nproc 3 --grace "$grace" -- "$mynetwork" --steps 4 --timeout 5 --fail-rank 1 --fail-step 1 \
    "$@" 2>&1)
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  echo "$out"
  echo "exit status $rc after ${elapsed}s"
  [[ $rc -ne 0 ]] || fail "pippy run exited 0"
}

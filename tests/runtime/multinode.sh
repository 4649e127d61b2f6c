#!/usr/bin/env bash
# multinode.sh PIPPY MYNETWORK PYTHON: launching across nodes with torchrun's flags, on this one host.
#   1. Two launchers, `pippy run --nnodes 2 --node-rank 0|1 --nproc-per-node 1 --master-port Q`, train
#      MyNetwork (1f1b, 2 ranks): the losses equal `pippy run --nproc 2`'s.
#   2. torchrun itself (the environment's torch.distributed.run, --no-python) launches the same program
#      on 2 processes, each rank binding itself (--bind-cores): the same losses again. `pippy run` is a
#      convenience, never the only way in.
#   3. Node 1 never comes: node 0's rank names node 1 within the rendezvous timeout and its launcher
#      exits non-zero, leaving no process behind.
set -euo pipefail
pippy=$1 mynetwork=$2 py=$3
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
args=(--schedule 1f1b --microbatches 4 --steps 3 --seed 3)
port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
losses() { grep '^step [0-9]* loss ' "$1"; }

"$pippy" run --nproc 2 -- "$mynetwork" "${args[@]}" --timeout 20 >"$tmp/one.txt" 2>&1
[[ $(losses "$tmp/one.txt" | wc -l) -eq 3 ]] || { echo "FAIL: pippy run --nproc 2"; cat "$tmp/one.txt"; exit 1; }

q=$(port)
"$pippy" run --nnodes 2 --node-rank 1 --nproc-per-node 1 --master-port "$q" -- "$mynetwork" "${args[@]}" --timeout 20 \
  >"$tmp/node1.txt" 2>&1 &
node1=$!
"$pippy" run --nnodes 2 --node-rank 0 --nproc-per-node 1 --master-port "$q" -- "$mynetwork" "${args[@]}" --timeout 20 \
  >"$tmp/node0.txt" 2>&1 || { echo "FAIL: node 0"; cat "$tmp/node0.txt" "$tmp/node1.txt"; exit 1; }
wait $node1 || { echo "FAIL: node 1"; cat "$tmp/node1.txt"; exit 1; }
diff <(losses "$tmp/one.txt") <(losses "$tmp/node1.txt") || { echo "FAIL: two nodes differ from one"; exit 1; }
echo "2 nodes: same losses as 1 node"

q=$(port)
"$py" -m torch.distributed.run --nnodes 1 --nproc-per-node 2 --master-addr 127.0.0.1 --master-port "$q" \
  --no-python "$mynetwork" "${args[@]}" --timeout 20 --bind-cores >"$tmp/torchrun.txt" 2>&1 ||
  { echo "FAIL: under torchrun"; cat "$tmp/torchrun.txt"; exit 1; }
# torchrun sets OMP_NUM_THREADS=1 for its processes, which may pick other kernels: equal to 1e-6
"$py" - "$tmp/one.txt" "$tmp/torchrun.txt" <<'PY' || { cat "$tmp/torchrun.txt"; exit 1; }
import re, sys
a, b = ([float(x) for x in re.findall(r"^step \d+ loss (\S+)", open(f).read(), re.M)] for f in sys.argv[1:])
assert len(a) == len(b) == 3, f"FAIL: {len(a)} and {len(b)} losses"
assert all(abs(x - y) <= 1e-6 * abs(x) for x, y in zip(a, b)), f"FAIL: torchrun's losses {b} differ from {a}"
print("torchrun: same losses", b)
PY

q=$(port)
start=$(date +%s)
status=0
"$pippy" run --nnodes 2 --node-rank 0 --nproc-per-node 1 --master-port "$q" -- "$mynetwork" "${args[@]}" \
  --timeout 3 >"$tmp/alone.txt" 2>&1 || status=$?
elapsed=$(($(date +%s) - start))
cat "$tmp/alone.txt"
[[ $status -ne 0 ]] || { echo "FAIL: node 0 alone succeeded"; exit 1; }
((elapsed < 30)) || { echo "FAIL: took ${elapsed} s"; exit 1; }
grep -q 'rank(s) 1 of 2 (node(s) 1) did not arrive within 3 s' "$tmp/alone.txt" || { echo "FAIL: node 1 not named"; exit 1; }
! pgrep -f -- "--seed 3 --timeout 3" >/dev/null 2>&1 || { echo "FAIL: a process was left behind"; exit 1; }
echo PASS

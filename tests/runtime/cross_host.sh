#!/usr/bin/env bash
# cross_host.sh PIPPY MYNETWORK: a job across two "hosts", each a network namespace of its own joined by a
# veth pair (10.77.R.1 and 10.77.R.2; nothing else is reachable from them). Skips (exit 77) where namespaces
# cannot be made; removes them on any exit.
#   1. `pippy run --nnodes 2 --node-rank 0|1` in each namespace, the master on node 0's address, Gloo on the
#      veth (GLOO_SOCKET_IFNAME): the losses equal the unsplit run's to 1e-5.
#   2. The same job, longer; once it trains, node 1's link goes down (`ip link set ... down`). Node 0's rank
#      must exit within its timeout with a message naming the lost rank, both launchers exit non-zero, and
#      no process of the job is left.
set -uo pipefail
pippy=$1 mynetwork=$2
id=$$
a=pippy-$id-a b=pippy-$id-b
net=10.77.$((id % 250))
tmp=$(mktemp -d)
cleanup() {
  ip netns pids "$a" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns pids "$b" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$a" 2>/dev/null
  ip netns del "$b" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
if ! ip netns add "$a" 2>"$tmp/err" || ! ip netns add "$b" 2>>"$tmp/err"; then
  echo "SKIP: cannot make network namespaces here: $(cat "$tmp/err")"
  exit 77
fi
wire() {
  ip link add "va$id" type veth peer name "vb$id" &&
    ip link set "va$id" netns "$a" && ip link set "vb$id" netns "$b" &&
    ip -n "$a" addr add "$net.1/24" dev "va$id" && ip -n "$b" addr add "$net.2/24" dev "vb$id" &&
    ip -n "$a" link set lo up && ip -n "$b" link set lo up &&
    ip -n "$a" link set "va$id" up && ip -n "$b" link set "vb$id" up
}
if ! wire 2>"$tmp/err"; then
  echo "SKIP: cannot join the namespaces with a veth pair here: $(cat "$tmp/err")"
  exit 77
fi
port=29611
node() { # NAMESPACE IFACE RANK ARGS...
  local ns=$1 ifname=$2 rank=$3
  shift 3
  ip netns exec "$ns" env GLOO_SOCKET_IFNAME="$ifname" "$pippy" run --nnodes 2 --node-rank "$rank" --nproc-per-node 1 \
    --master-addr "$net.1" --master-port "$port" --grace 5 -- "$mynetwork" "$@"
}
losses() { grep '^step [0-9]* loss ' "$1"; }

common=(--schedule 1f1b --microbatches 4 --steps 3 --seed 5 --timeout 20)
"$pippy" run --nproc 1 -- "$mynetwork" "${common[@]}" >"$tmp/unsplit.txt" 2>&1 || { cat "$tmp/unsplit.txt"; exit 1; }
node "$b" "vb$id" 1 "${common[@]}" >"$tmp/b.txt" 2>&1 &
nb=$!
node "$a" "va$id" 0 "${common[@]}" >"$tmp/a.txt" 2>&1
sa=$?
wait $nb
sb=$?
cat "$tmp/a.txt" "$tmp/b.txt"
((sa == 0 && sb == 0)) || { echo "FAIL: the two-host job failed ($sa, $sb)"; exit 1; }
paste <(losses "$tmp/unsplit.txt") <(losses "$tmp/b.txt") | awk '
  { d = $4 - $8; if (d < 0) d = -d; if (d > 1e-5 * ($4 < 0 ? -$4 : $4)) bad = 1; n++ }
  END { if (n != 3 || bad) { print "FAIL: losses differ from the unsplit run"; exit 1 } }' || exit 1
echo "two hosts: the unsplit losses"

port=29612
long=(--schedule 1f1b --microbatches 4 --steps 100000 --seed 5 --timeout 5)
node "$b" "vb$id" 1 "${long[@]}" >"$tmp/b2.txt" 2>&1 &
nb=$!
node "$a" "va$id" 0 "${long[@]}" >"$tmp/a2.txt" 2>&1 &
na=$!
for _ in $(seq 300); do
  [[ $(losses "$tmp/b2.txt" | wc -l) -ge 3 ]] && break
  sleep 0.1
done
[[ $(losses "$tmp/b2.txt" | wc -l) -ge 3 ]] || { echo "FAIL: the long job never trained"; cat "$tmp/a2.txt" "$tmp/b2.txt"; exit 1; }
ip -n "$b" link set "vb$id" down
cut=$(date +%s)
wait $na
sa=$?
done_a=$(date +%s)
wait $nb
sb=$?
cat "$tmp/a2.txt"
tail -5 "$tmp/b2.txt"
echo "launchers: node 0 exit $sa after $((done_a - cut)) s, node 1 exit $sb"
((sa != 0 && sb != 0)) || { echo "FAIL: a launcher exited 0 after the link was cut"; exit 1; }
((done_a - cut <= 30)) || { echo "FAIL: node 0 took $((done_a - cut)) s to notice"; exit 1; }
grep -Eq 'rank 0.*rank 1' "$tmp/a2.txt" || { echo "FAIL: node 0 did not name the lost rank 1"; exit 1; }
for ns in "$a" "$b"; do
  [[ -z $(ip netns pids "$ns") ]] || { echo "FAIL: processes left in $ns: $(ip netns pids "$ns")"; exit 1; }
done
echo PASS

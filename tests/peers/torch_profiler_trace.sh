#!/usr/bin/env bash
# torch_profiler_trace.sh PIPPY MYNETWORK PYTHON SCHEDULE V [PIPPY_VIEW]
# The traces people already have (issue 16): torch.distributed.pipelining trains MyNetwork on 2 Gloo
# processes (pp_train.py) under torch.profiler, and each process writes the profiler's own Chrome trace
# (export_chrome_trace). Each file opens as one rank (its distributedInfo.rank), `pippy trace merge` joins
# them, and `pippy trace summary` of the whole run counts every forward and backward: 4 micro-batches on
# each of the 2 x V stages (V stages per rank). pippy-view draws the file and the merged run.
set -euo pipefail
pippy=$1 mynetwork=$2 py=$3 schedule=$4 v=$5 view=${6:-}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
M=4 S=$((2 * v))
"$mynetwork" --schedule "$schedule" --microbatches $M --steps 2 --seed 0 --export-dir "$tmp/start" >/dev/null
mkdir "$tmp/prof"
"$py" "$here/pp_train.py" --export "$tmp/start" --nproc 2 --schedule "$schedule" --stages-per-rank "$v" \
  --profiler-dir "$tmp/prof" >/dev/null
for r in 0 1; do
  [[ -s $tmp/prof/rank$r.json ]] || fail "torch.profiler wrote no trace for rank $r"
  one=$("$pippy" trace summary "$tmp/prof/rank$r.json") || fail "rank $r's torch.profiler trace does not open"
  grep -q "^run: torch.profiler, rank $r$" <<<"$one" || fail "rank $r's file was not read as rank $r: $one"
  grep -q "per kind:  F x$((M * v)) .* B x$((M * v)) " <<<"$one" ||
    fail "rank $r: expected $((M * v)) forwards and backwards: $(grep 'per kind' <<<"$one")"
done
"$pippy" trace merge "$tmp/prof/rank0.json" "$tmp/prof/rank1.json" -o "$tmp/run.json"
summary=$("$pippy" trace summary "$tmp/run.json")
echo "$summary" | head -8
grep -q "^ranks: 2 " <<<"$summary" || fail "the merged run does not have 2 ranks"
grep -q "per kind:  F x$((M * S)) .* B x$((M * S)) " <<<"$summary" ||
  fail "expected $((M * S)) forwards and $((M * S)) backwards: $(grep 'per kind' <<<"$summary")"
if "$pippy" trace merge "$tmp/prof/rank0.json" "$tmp/prof/rank0.json" -o "$tmp/twice.json" 2>"$tmp/err"; then
  fail "a rank merged twice was accepted"
fi
grep -q "rank 0 is in both" "$tmp/err" || fail "unexpected message: $(cat "$tmp/err")"
if [[ -n $view ]]; then
  QT_QPA_PLATFORM=offscreen "$view" --export "$tmp/run.png" "$tmp/run.json" "$tmp/prof/rank1.json" 2>/dev/null ||
    fail "pippy-view could not draw the torch.profiler traces"
  [[ -s $tmp/run.png ]] || fail "pippy-view wrote no picture"
fi
echo "OK: torch.pp $schedule (V=$v) under torch.profiler: $((M * S)) F and $((M * S)) B over 2 ranks"

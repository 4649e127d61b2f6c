#!/usr/bin/env bash
# runtime_ab.sh BUILD_A BUILD_B [ROUNDS] [OUT_DIR]: two builds of the runtime side by side (A: the change,
# B: the baseline, e.g. a worktree of the commit before it). MyNetwork (batch 128, 8 micro-batches,
# 1 thread per process) trains 30 steps on 2 Gloo processes (`pippy run --bind-cores`) with --profile,
# for gpipe, 1f1b and interleaved-1f1b; A and B run in turn, ROUNDS (5) times. Per schedule: the median of
# each build's measured step (`measured step_us`, the steps after the first), the median of the ratios
# A/B taken pair by pair, and each build's median action_overhead_us (the runtime's own time before each
# compute action) and arrival_cost_us (what a transfer arriving during compute takes from it, as the
# profile's probe measures it), both from the profile.
set -euo pipefail
a=$(cd "$1" && pwd) b=$(cd "$2" && pwd)
rounds=${3:-5}
out=${4:-$(mktemp -d "${TMPDIR:-/tmp}/runtime_ab.XXXXXX")}
mkdir -p "$out"
run() { # build schedule tag
  local v=1
  [[ $2 == interleaved-1f1b ]] && v=2
  "$1/tools/pippy" run --nproc 2 --bind-cores -- "$1/examples/mynetwork" --schedule "$2" --stages-per-rank $v \
    --microbatches 8 --batch 128 --steps 30 --threads 1 --profile "$out/$3.json" >"$out/$3.log" 2>&1 ||
    { echo "error: $2 with $1 failed (see $out/$3.log)" >&2; exit 1; }
  awk '/^measured step_us/ {print $3}' "$out/$3.log"
}
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))" "$1" "$2"; }
printf "%-18s %9s %9s %7s %13s %13s %12s %12s\n" schedule A_ms B_ms A/B A_overhead_us B_overhead_us A_arrival_us B_arrival_us
for s in gpipe 1f1b interleaved-1f1b; do
  : >"$out/$s.tsv"
  for ((i = 0; i < rounds; i++)); do
    ta=$(run "$a" "$s" "$s-A-$i") tb=$(run "$b" "$s" "$s-B-$i")
    printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$ta" "$tb" \
      "$(field "$out/$s-A-$i.json" action_overhead_us)" "$(field "$out/$s-B-$i.json" action_overhead_us)" \
      "$(field "$out/$s-A-$i.json" arrival_cost_us)" "$(field "$out/$s-B-$i.json" arrival_cost_us)" >>"$out/$s.tsv"
  done
  python3 - "$s" "$out/$s.tsv" <<'PY'
import statistics as st, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[2])]
med = lambda i: st.median(r[i] for r in rows)
ratio = st.median(r[0] / r[1] for r in rows)
print(f"{sys.argv[1]:<18s} {med(0) / 1000:9.3f} {med(1) / 1000:9.3f} {ratio:7.3f} {med(2):13.1f} {med(3):13.1f} "
      f"{med(4):12.1f} {med(5):12.1f}")
PY
done

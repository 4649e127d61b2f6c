#!/usr/bin/env bash
# Ours vs torch.distributed.pipelining, side by side in one run, on the same model, sizes, schedule,
# micro-batches, processes (Gloo on CPU) and threads per process; the initial weights and data are the
# same too (our run exports them, tests/peers/pp_train.py trains from them). Both measure alike: a barrier
# before each step, the slowest rank's wall time per step, the median over the steps after the first.
#   bench/peer_bench.sh [BUILD_DIR]   (env: NPROC=2, STEPS=12, THREADS=1, SCHEDULES, SIZES="32:16 512:8", BIND=1)
# BIND=1: every rank of both on its own share of the CPUs (`pippy run --bind-cores`, and pp_train.py's
# --bind-cores with the same rule); BIND=0: neither is bound, and the kernel places them.
# SIZES: batch:micro-batches pairs for MyNetwork (PiPPy's README model, 512 -> 512 -> 1024 -> 256 -> 10).
# Prints a table and, last, `ratio ours/torch.pp X` with X the worst (largest) ratio over all rows.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
nproc=${NPROC:-2} steps=${STEPS:-12} threads=${THREADS:-1}
bind=() peer_bind=()
[[ ${BIND:-1} == 1 ]] && bind=(--bind-cores) peer_bind=(--bind-cores)
schedules=${SCHEDULES:-"gpipe 1f1b interleaved-1f1b looped-bfs interleaved-zb zbv dualpipev"}
sizes=${SIZES:-"32:16 512:8"}
py=$(scripts/pyenv.sh)/bin/python
pippy=$build/tools/pippy mynetwork=$build/examples/mynetwork
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step_ms() { sed -n 's/^step_ms \([0-9.e+-]*\).*/\1/p'; }

printf "| batch | micro-batches | schedule | ours ms | torch.pp ms | unsplit (PyTorch) ms | ours/torch.pp |\n"
printf "|---|---|---|---|---|---|---|\n"
worst=0
for size in $sizes; do
  batch=${size%%:*} mbs=${size##*:}
  for s in $schedules; do
    dir=$tmp/$batch-$s
    v=() # the looped multi-stage schedules with 2 stages per rank (the V-shaped have 2)
    [[ $s =~ ^(interleaved-1f1b|looped-bfs|interleaved-zb)$ ]] && v=(--stages-per-rank 2)
    ours=$("$pippy" run --nproc "$nproc" "${bind[@]}" -- "$mynetwork" --schedule "$s" "${v[@]}" --batch "$batch" \
      --microbatches "$mbs" --steps "$steps" --threads "$threads" --seed 0 --time --export-dir "$dir" | step_ms)
    peer=$(OMP_NUM_THREADS=$threads "$py" tests/peers/pp_train.py --export "$dir" --nproc "$nproc" --schedule "$s" \
      "${peer_bind[@]}" --time | step_ms)
    unsplit=$(OMP_NUM_THREADS=$threads "$py" tests/peers/pp_train.py --export "$dir" --nproc 1 --time | step_ms)
    ratio=$(awk -v a="$ours" -v b="$peer" 'BEGIN { printf "%.2f", a / b }')
    worst=$(awk -v a="$ratio" -v w="$worst" 'BEGIN { print (a > w ? a : w) }')
    printf "| %s | %s | %s | %.2f | %.2f | %.2f | %s |\n" "$batch" "$mbs" "$s" "$ours" "$peer" "$unsplit" "$ratio"
  done
done
echo "ratio ours/torch.pp $worst"

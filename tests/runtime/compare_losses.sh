#!/usr/bin/env bash
# compare_losses.sh PIPPY MYNETWORK NPROC SCHEDULE [MYNETWORK ARGS...]
# Trains MyNetwork unsplit (1 process) and pipelined on NPROC processes (`pippy run`), and checks that
# both print the same `step N loss X` lines to 1e-5 relative.
set -euo pipefail
pippy=$1 mynetwork=$2 nproc=$3 schedule=$4
shift 4
common=(--steps 3 --seed 7 --microbatches 6 --timeout 30 "$@")
ref=$("$pippy" run --nproc 1 -- "$mynetwork" "${common[@]}" | grep '^step ')
got=$("$pippy" run --nproc "$nproc" -- "$mynetwork" --schedule "$schedule" "${common[@]}" | grep '^step ')
echo "unsplit:"; echo "$ref"
echo "$schedule on $nproc processes:"; echo "$got"
[[ $(wc -l <<<"$ref") -eq 3 && $(wc -l <<<"$got") -eq 3 ]] || { echo "FAIL: expected 3 loss lines each"; exit 1; }
# Every loss must be a finite number (nan, -nan, inf are failures, not equal to anything), then equal.
paste <(echo "$ref") <(echo "$got") | awk '
function finite(x) { return x ~ /^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$/ }
{
  if ($2 != $6) { print "FAIL: step numbers differ: " $0; bad = 1; next }
  if (!finite($4) || !finite($8)) { print "FAIL: step " $2 ": a loss that is not a finite number: " $4 " vs " $8; bad = 1; next }
  d = $4 - $8; if (d < 0) d = -d; a = $4 < 0 ? -$4 : $4;
  if (d > 1e-5 * a) { print "FAIL: step " $2 ": " $4 " vs " $8; bad = 1 }
} END { exit bad }'
echo "OK: losses agree to 1e-5 relative"

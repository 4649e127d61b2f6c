#!/usr/bin/env bash
# plan_run.sh PIPPY MYNETWORK: `mynetwork --plan DIR` runs what the plan says. A plan (zbv, V=2, 4
# micro-batches, the Sequential's modules split at 2, 3 and 5) trains on 2 processes: its export's
# config.json records those stage boundaries, and its losses equal the unsplit model's on the same data.
# A plan of 1 rank x 2 replicas with ZeRO-1 trains so too, each replica keeping half the optimizer state.
# A plan with a bad field fails with exit status 2 and names the file and field.
set -uo pipefail
pippy=$1 mynetwork=$2
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/plan"
echo '{"schedule": "zbv", "ranks": 2, "stages_per_rank": 2, "microbatches": 4, "boundaries": [0, 2, 3, 5]}' \
  >"$tmp/plan/plan.json"
common=(--steps 3 --seed 3 --batch 32 --timeout 30)
ref=$("$pippy" run --nproc 1 -- "$mynetwork" "${common[@]}" | grep '^step ') || fail "unsplit run"
got=$("$pippy" run --nproc 2 -- "$mynetwork" --plan "$tmp/plan" "${common[@]}" --export-dir "$tmp/export" |
  grep '^step ') || fail "planned run: exit status $?"
echo "unsplit:"; echo "$ref"; echo "planned:"; echo "$got"
python3 - "$tmp/export/config.json" "$ref" "$got" <<'PY' || exit 1
import json, sys
cfg = json.load(open(sys.argv[1]))
bad = []
if cfg.get("schedule") != "zbv" or cfg.get("microbatches") != 4:
    bad.append(f"schedule {cfg.get('schedule')!r} with {cfg.get('microbatches')!r} micro-batches, expected zbv with 4")
if cfg.get("stage_boundaries") != [2, 3, 5]:
    bad.append(f"stage boundaries {cfg.get('stage_boundaries')!r}, expected [2, 3, 5]")
ref = [float(l.split()[3]) for l in sys.argv[2].splitlines()]
got = [float(l.split()[3]) for l in sys.argv[3].splitlines()]
if len(ref) != 3 or len(got) != 3 or any(abs(a - b) > 1e-5 * abs(a) for a, b in zip(ref, got)):
    bad.append(f"losses {got} differ from the unsplit {ref}")
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
PY
echo '{"schedule": "1f1b", "ranks": 1, "replicas": 2, "zero1": true, "stages_per_rank": 1, "microbatches": 4}' \
  >"$tmp/plan/plan.json"
out=$("$pippy" run --nproc 2 -- "$mynetwork" --plan "$tmp/plan" "${common[@]}" 2>&1) || fail "ZeRO-1 plan: exit status $?"
echo "$out"
[[ $(grep -c "ZeRO-1 optimizer state for" <<<"$out") -eq 2 ]] || fail "the plan's zero1 was not applied on both replicas"
python3 - "$ref" "$(grep '^step ' <<<"$out")" <<'PY' || fail "ZeRO-1 plan: losses differ from the unsplit run"
import sys
ref = [float(l.split()[3]) for l in sys.argv[1].splitlines()]
got = [float(l.split()[3]) for l in sys.argv[2].splitlines()]
sys.exit(0 if len(got) == 3 and all(abs(a - b) <= 1e-5 * abs(a) for a, b in zip(ref, got)) else 1)
PY
echo '{"schedule": "zbv", "ranks": 2, "stages_per_rank": 2, "microbatches": 4, "boundaries": [0, 2, 2, 5]}' \
  >"$tmp/plan/plan.json"
out=$("$mynetwork" --plan "$tmp/plan" --steps 1 2>&1)
rc=$?
echo "$out"
[[ $rc -eq 2 ]] || fail "a bad plan: exit status $rc, expected 2"
grep -q "^error: plan file '$tmp/plan/plan.json': boundaries must start at 0 and increase (boundaries\[2\] is 2)$" \
  <<<"$out" || fail "the error does not name the file and field"
echo OK

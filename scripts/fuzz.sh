#!/usr/bin/env bash
# Fuzzes every parser with libFuzzer (fuzz/, one harness per parser): builds the harnesses with clang,
# ASan and UBSan into $BUILD_DIR (torch-free: core and traces only), then for each harness
#   1. runs every input of fuzz/corpus/<harness>/ once (the seeds and the regression inputs), and
#   2. fuzzes for FUZZ_SECONDS, starting from the inputs that passed.
# Prints per harness the inputs executed and the first lines of each report; exits non-zero on any crash,
# sanitizer report, uncaught exception other than input_error, leak, out-of-memory (-rss_limit_mb=2048)
# or timeout (-timeout=10). Crash inputs and the grown corpus stay in $BUILD_DIR/fuzz-work, never the repo.
# Env: BUILD_DIR (default build-fuzz), FUZZ_SECONDS (default 60, per harness; 0 runs the corpus only),
#      FUZZ_HARNESSES (default: all, space-separated), JOBS (build jobs, default nproc).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=${JOBS:-$(nproc)}
# The largest input each harness makes, in bytes (the corpus's own inputs are smaller).
declare -A max_len=([schedule_csv]=4096 [schedule_json]=4096 [cost_json]=4096 [cost_spec]=256
                    [trace_json]=8192 [trace_jsonl]=8192)
harnesses=(${FUZZ_HARNESSES:-schedule_csv schedule_json cost_json cost_spec trace_json trace_jsonl})

for h in "${harnesses[@]}"; do
  [[ -n ${max_len[$h]:-} ]] || { echo "fuzz: no harness '$h' (one of: ${!max_len[*]})" >&2; exit 2; }
done
command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (scripts/setup.sh installs it)" >&2; exit 2; }
start=$SECONDS
set -e
# -fsanitize=fuzzer-no-link (coverage) comes from PIPPY_BUILD_FUZZ, -fsanitize=fuzzer on the harnesses only.
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -Wno-unknown-warning-option" \
  -DPIPPY_BUILD_FUZZ=ON -DPIPPY_BUILD_TESTS=OFF -DPIPPY_BUILD_TORCH=OFF -DPIPPY_BUILD_GUI=OFF \
  -DPIPPY_BUILD_BENCH=OFF -DPIPPY_BUILD_CUDA=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target pippy_fuzz
set +e
echo "fuzz: built in $((SECONDS - start)) s"
build=$(cd "$build" && pwd)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The first lines that say what went wrong in a libFuzzer log.
report() {
  grep -m3 -E 'terminate called|what\(\):|runtime error:|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$1" |
    sed 's/^/      /'
}

failed=0
summary=()
for h in "${harnesses[@]}"; do
  bin=$build/fuzz/fuzz_$h
  seeds=$root/fuzz/corpus/$h
  work=$build/fuzz-work/$h
  mkdir -p "$work/corpus" "$work/artifacts" "$work/logs"
  opts=(-rss_limit_mb=2048 -timeout=10 "-max_len=${max_len[$h]}" "-artifact_prefix=$work/artifacts/")
  echo "== $h"
  # 1. The corpus as regression inputs, one process each so that every failing input is named.
  ran=0 bad=0
  for f in "$seeds"/*; do
    [[ -f $f ]] || continue
    ran=$((ran + 1))
    log=$work/logs/$(basename "$f").log
    if (cd "$work" && "$bin" "${opts[@]}" "$f") >"$log" 2>&1; then
      cp "$f" "$work/corpus/"
    else
      bad=$((bad + 1))
      echo "  FAIL corpus input fuzz/corpus/$h/$(basename "$f") (log: $log)"
      report "$log"
    fi
  done
  echo "  corpus: $ran inputs, $bad failed"
  # 2. Fuzz from what passed (the grown corpus is kept in the build dir for the next run).
  units=0 rate=0 fuzz_rc=0
  if ((seconds > 0)); then
    log=$work/logs/fuzz.log
    (cd "$work" && "$bin" "${opts[@]}" -max_total_time="$seconds" -print_final_stats=1 "$work/corpus") >"$log" 2>&1
    fuzz_rc=$?
    units=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    units=${units:-0}
    rate=$(sed -n 's/.*exec\/s: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    if ((fuzz_rc != 0)); then
      echo "  FAIL fuzzing, exit $fuzz_rc after $units inputs (log: $log)"
      report "$log"
      sed -n 's/.*Test unit written to /      input: /p' "$log"
    fi
    echo "  fuzz: $units inputs executed in ${seconds} s or less (${rate:-?} exec/s), exit $fuzz_rc"
  fi
  status=ok
  if ((bad > 0 || fuzz_rc != 0)); then
    status=FAIL
    failed=1
  fi
  summary+=("$(printf '%-14s corpus %3d run %3d failed   fuzz %9s inputs %7s exec/s   %s' \
    "$h" "$ran" "$bad" "$units" "${rate:-?}" "$status")")
done
echo
echo "fuzz summary ($((SECONDS - start)) s in all):"
printf '  %s\n' "${summary[@]}"
exit "$failed"

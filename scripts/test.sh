#!/usr/bin/env bash
# Quick start, second command: install what is missing, build, and pass every test (peer tests against
# torch.distributed.pipelining included; GPU tests are reported as skipped where there is no GPU). Ends
# with the list of the tests that did not run here and why (skipped: exit code 77, e.g. no CUDA device or
# no xvfb-run), so that a skip is never mistaken for a pass.
# Env: BUILD_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
scripts/build.sh
cd "${BUILD_DIR:-build}"
junit=$PWD/Testing/pippy-test-junit.xml
rm -f "$junit"
rc=0
ctest --output-on-failure -j "$(nproc)" --timeout 600 --output-junit "$junit" || rc=$?
# CTest's JUnit report marks every test that did not run status="notrun", with the reason in <skipped>.
skipped=$(awk '
  /<testcase name="/ { name = $0; sub(/.*<testcase name="/, "", name); sub(/" classname=.*/, "", name)
                       notrun = $0 ~ /status="notrun"/; next }
  notrun && /<skipped message="/ { why = $0; sub(/.*<skipped message="/, "", why); sub(/"\/>.*/, "", why)
                                   print "  " name "  (" why ")"; notrun = 0 }' "$junit" 2>/dev/null |
  sed "s/&quot;/\"/g; s/&apos;/'/g; s/&lt;/</g; s/&gt;/>/g; s/&amp;/\\&/g")
if [[ -n $skipped ]]; then
  echo
  echo "Tests that did not run here ($(wc -l <<<"$skipped")):"
  echo "$skipped"
else
  echo
  echo "Tests that did not run here: none"
fi
exit "$rc"

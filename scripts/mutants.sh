#!/usr/bin/env bash
# Mutation check, on demand (not in CI): seeded random operator mutations of core/, simulator/ and traces/,
# each built and tested; prints the score. `scripts/mutants.sh --help` lists the options, e.g.
#   scripts/mutants.sh --seed 1 --count 80
set -euo pipefail
exec python3 "$(dirname "$0")/mutants.py" "$@"

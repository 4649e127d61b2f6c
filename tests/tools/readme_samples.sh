#!/usr/bin/env bash
# readme_samples.sh REPO PIPPY [PIPPY_VIEW]: runs the README's "Sample files and reference" commands as they
# stand, from the repository root (pippy and pippy-view as built), and fails on the first that exits non-zero.
# pippy-view opens a window: it runs with --export into a temporary PNG instead (offscreen), which reads and
# draws the same files.
set -uo pipefail
repo=$1 pippy=$2 view=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$repo" || exit 1
block=$(awk '/^## Sample files and reference/ {in_section = 1} in_section && /^```sh/ {grab = 1; next}
             grab && /^```/ {exit} grab {print}' README.md)
[[ -n $block ]] || { echo "FAIL: no sh block in README.md's sample section"; exit 1; }
n=0
while IFS= read -r line; do
  cmd=${line%%#*} # the comment at the end of the line
  [[ -n ${cmd// /} ]] || continue
  read -ra words <<<"$cmd"
  case ${words[0]} in
  pippy) words[0]=$pippy ;;
  pippy-view)
    [[ -n $view ]] || { echo "skipped (no pippy-view built): $cmd"; continue; }
    words=("$view" --export "$tmp/view.png" "${words[@]:1}") ;;
  *) echo "FAIL: not a pippy command: $cmd"; exit 1 ;;
  esac
  if ! QT_QPA_PLATFORM=offscreen "${words[@]}" >"$tmp/out" 2>&1; then
    echo "FAIL: README command failed: $cmd"
    cat "$tmp/out"
    exit 1
  fi
  n=$((n + 1))
  echo "ok: $cmd"
done <<<"$block"
((n >= 5)) || { echo "FAIL: only $n commands ran"; exit 1; }
echo "OK: $n README commands"

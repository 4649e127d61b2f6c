#!/usr/bin/env bash
# Prints the directory of the project's Python environment, the one place that names it: $PIPPY_PYENV if
# set, else <cache>/pippy-cpp/venv-torch<pinned torch>-py<python major.minor>, so that every clone on this
# machine (CI's fresh one included) shares one copy of the wheels.
set -euo pipefail
if [[ -n ${PIPPY_PYENV:-} ]]; then
  echo "$PIPPY_PYENV"
  exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
torch=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$here/requirements.txt")
py=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
echo "${XDG_CACHE_HOME:-$HOME/.cache}/pippy-cpp/venv-torch$torch-py$py"

#!/usr/bin/env bash
# Installs what pippy-cpp needs and is missing, and nothing else (a second run installs nothing):
# - Debian bookworm packages: compilers (clang with libFuzzer's runtime for scripts/fuzz.sh), CAF, Qt 6,
#   nlohmann_json, Catch2, CLI11, Xvfb;
# - the project's Python environment (scripts/requirements.txt: torch 2.11 with libtorch, c10d and
#   torch.distributed.pipelining; transformers) in the shared cache directory that scripts/pyenv.sh names,
#   without a pip cache beside it. Prints the environment's path on the last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages=(
  build-essential cmake ninja-build ccache pkg-config python3 python3-venv clang libclang-rt-14-dev
  libcaf-dev nlohmann-json3-dev catch2 libcli11-dev
  qt6-base-dev qt6-svg-dev qt6-qpa-plugins xvfb xauth
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

env_dir=$("$here/pyenv.sh")
stamp="$env_dir/.pippy-requirements.sha256"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "setup: Python environment $env_dir (scripts/requirements.txt; the torch wheels take 3-4 GB)" >&2
  mkdir -p "$(dirname "$env_dir")"
  [[ -x $env_dir/bin/python ]] || python3 -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install -q --no-cache-dir --disable-pip-version-check -r "$here/requirements.txt"
  "$env_dir/bin/python" -c 'import torch, torch.distributed.pipelining, transformers' # fail here, not in the build
  echo "$want" >"$stamp" # written last: an interrupted install is finished by the next run
fi
echo "$env_dir"

#!/usr/bin/env bash
# readme_commands.sh REPO BUILD: runs every shell command of every README, as written, in the order the
# READMEs give them, and fails on the first that exits non-zero (issue 18: a documented command that stops
# working fails CI).
#
# The commands run as a newcomer would type them at the repository root, one after another, so a file one
# command writes (measured.json, costs.json, models/vit.pt) is there for the next: in a scratch folder that
# holds the repository's examples/, scripts/ and tests/ and this build as build/, with `pippy` and
# `pippy-view` on PATH. pippy-view opens a window: here it draws offscreen into a PNG (--export), reading
# and drawing the same files. Nothing is written into the repository.
#
# The few commands that cannot run here are listed below (not_run), each with why; each must still be in a
# README, so the list cannot go stale. A program that was not built (a build without torch or Qt) skips
# its commands, saying so.
set -uo pipefail
repo=$(cd "$1" && pwd) build=$(cd "$2" && pwd)
readmes=(README.md compiler/README.md simulator/README.md runtime/README.md gpu/README.md)

# A unique part of the command (or =the whole command) -> why it is not run here.
declare -A not_run=(
  ["scripts/quickstart.sh"]="installs and builds; its main job on this build is tests/runtime/quickstart_check.sh"
  ["scripts/test.sh"]="installs, builds and runs this suite, which runs this script"
  ["--live 7777"]="a fixed TCP port and a viewer that watches until closed; live streams are tested on ports bound to 0 (tests/runtime/live_job.sh, tests/traces/test_live.cpp, tests/gui)"
  ["pippy-view --live"]="a window that follows a live stream until it is closed (tests/gui/test_gui_live_sim runs it offscreen)"
  ["--port 7777"]="a fixed TCP port; trace publish is tested on port 0 (tests/traces/test_live.cpp)"
  ["=scripts/mutants.sh --seed 1 --count 80"]="80 mutants, a rebuild each: about 20 minutes (the --list form runs)"
  ["scripts/fuzz.sh"]="CI runs it as its own job after this suite (.ci/run)"
  ["scripts/sanitize.sh"]="CI runs it as its own job after this suite (.ci/run)"
  ["crash-..."]="replays a crash file that a fuzzing run left (the name is the fuzzer's)"
)

scratch=$(mktemp -d "${TMPDIR:-/tmp}/readme_commands.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
ln -s "$repo/examples" "$scratch/examples"
ln -s "$repo/scripts" "$scratch/scripts"
ln -s "$repo/tests" "$scratch/tests"
ln -s "$build" "$scratch/build"
mkdir "$scratch/.bin"
ln -s "$build/tools/pippy" "$scratch/.bin/pippy"
if [[ -x $build/gui/pippy-view ]]; then
  # pippy-view FILES...: the same files drawn into a PNG (offscreen) instead of a window.
  cat >"$scratch/.bin/pippy-view" <<EOF
#!/usr/bin/env bash
for a in "\$@"; do [[ \$a == --export ]] && exec "$build/gui/pippy-view" "\$@"; done
exec "$build/gui/pippy-view" --export "$scratch/.view.png" "\$@"
EOF
  chmod +x "$scratch/.bin/pippy-view"
fi

# Each README's ```sh blocks: one command per line (a trailing backslash joins the next line), without
# the comment at its end; lines that are only a comment are left out. Output: README:LINE<TAB>COMMAND.
extract() {
  awk -v file="$1" '
    /^```sh[[:space:]]*$/ { inside = 1; next }
    inside && /^```/ { inside = 0; next }
    !inside { next }
    {
      line = $0
      if (cmd == "") start = NR
      sub(/[[:space:]]+#.*$/, "", line)
      if (line ~ /^[[:space:]]*#/) line = ""
      if (line ~ /\\$/) { sub(/\\$/, "", line); cmd = cmd line; next }
      cmd = cmd line
      gsub(/[[:space:]]+/, " ", cmd); sub(/^ /, "", cmd); sub(/ $/, "", cmd)
      if (cmd != "") print file ":" start "\t" cmd
      cmd = ""
    }' "$repo/$1"
}

commands=()
for r in "${readmes[@]}"; do
  [[ -f $repo/$r ]] || { echo "FAIL: $r is listed here but does not exist"; exit 1; }
  while IFS= read -r l; do commands+=("$l"); done < <(extract "$r")
done
((${#commands[@]} > 0)) || { echo "FAIL: no shell commands found in ${readmes[*]}"; exit 1; }

# Whether command $1 is the one not_run's key $2 names.
names() { if [[ $2 == =* ]]; then [[ $1 == "${2#=}" ]]; else [[ $1 == *"$2"* ]]; fi; }

# Every not_run entry must name a README command: a command that was fixed or removed takes its entry along.
for key in "${!not_run[@]}"; do
  found=0
  for c in "${commands[@]}"; do names "${c#*$'\t'}" "$key" && found=1; done
  ((found)) || { echo "FAIL: not_run names '$key', which no README command has any more"; exit 1; }
done

# The program a command runs, as the scratch folder resolves it, when it is one of this build's.
program_of() {
  local w
  for w in $1; do
    [[ $w == *=* && $w != -* ]] && continue # VAR=value before the command
    case $w in
    pippy | pippy-view) echo "$scratch/.bin/$w" ;;
    build/*) echo "$scratch/$w" ;;
    *) echo "" ;;
    esac
    return
  done
}

ran=0 skipped=0
for entry in "${commands[@]}"; do
  where=${entry%%$'\t'*} cmd=${entry#*$'\t'}
  why=""
  for key in "${!not_run[@]}"; do
    names "$cmd" "$key" && why=${not_run[$key]}
  done
  # `pippy run -- build/examples/X`: the program is X.
  prog=$(program_of "$cmd")
  [[ $cmd == *" -- build/"* ]] && prog=$scratch/build/${cmd#* -- build/} && prog=${prog%% *}
  if [[ -z $why && -n $prog && ! -x $prog ]]; then
    why="${prog#"$scratch/"} was not built here"
  fi
  if [[ -n $why ]]; then
    echo "not run ($where): $cmd"
    echo "    why: $why"
    skipped=$((skipped + 1))
    continue
  fi
  echo "run ($where): $cmd"
  start=$(date +%s%N)
  (cd "$scratch" && PATH="$scratch/.bin:$PATH" QT_QPA_PLATFORM=offscreen timeout 600 bash -c "$cmd") \
    >"$scratch/.out" 2>&1 </dev/null
  rc=$?
  if ((rc != 0)); then
    echo "FAIL: $where: the README's command exited $rc:"
    echo "  $cmd"
    tail -n 40 "$scratch/.out" | sed 's/^/  | /'
    exit 1
  fi
  echo "    ok in $(( ($(date +%s%N) - start) / 1000000 )) ms"
  ran=$((ran + 1))
done
echo "OK: $ran README commands ran, $skipped not run (each with why above)"

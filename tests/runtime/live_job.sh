#!/usr/bin/env bash
# live_job.sh PIPPY MYNETWORK PYTHON [MYNETWORK ARGS...]: the live view of a real training job. MyNetwork
# trains 4 steps of interleaved 1F1B on 2 processes with --live 0 (rank 0 serves every rank's events on
# a free port, which it prints). A reader connects while the job runs and reads until the job closes the
# stream. Every action of the job's --trace (computes and transfers, both ranks, every step) must have
# arrived, and nothing else: the same set of events; plus one "step K" marker per step and memory
# samples from both ranks.
set -euo pipefail
pippy=$1 mynetwork=$2 py=$3
shift 3
tmp=$(mktemp -d)
trap 'kill $job 2>/dev/null || true; rm -rf "$tmp"' EXIT
steps=4
"$pippy" run --nproc 2 -- "$mynetwork" --schedule interleaved-1f1b --stages-per-rank 2 --microbatches 4 \
  --steps $steps --seed 1 --timeout 30 --trace "$tmp/trace.json" --live 0 "$@" >"$tmp/out.txt" 2>&1 &
job=$!
"$py" - "$tmp/out.txt" "$tmp/trace.json" $steps "$job" <<'PY'
import json, os, re, socket, sys, time
log, trace_path, steps, job = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
deadline = time.time() + 60
port = None
while port is None and time.time() < deadline:
    m = re.search(r"live: publishing on 127\.0\.0\.1:(\d+)", open(log).read())
    port = int(m.group(1)) if m else None
    time.sleep(0.02)
if port is None:
    sys.exit("FAIL: rank 0 never said where it publishes:\n" + open(log).read())
s = socket.create_connection(("127.0.0.1", port), timeout=60)
data = b""
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    data += chunk
lines = [json.loads(l) for l in data.decode().splitlines() if l.strip()]
# the job must be over (the stream closed at its end) and must have succeeded
while time.time() < deadline:
    try:
        pid, status = os.waitpid(job, os.WNOHANG)
    except ChildProcessError:
        break
    if pid:
        break
    time.sleep(0.05)
from collections import Counter
def key(e):  # the trace file is shifted to start at 0, the stream keeps wall-clock times: no "ts"
    a = e.get("args", {})
    return (e["pid"], e["tid"], a.get("stage"), a.get("kind"), a.get("microbatch"), e["dur"])
live = Counter(key(e) for e in lines if e.get("ph") == "X")
deadline2 = time.time() + 30
while not os.path.exists(trace_path) and time.time() < deadline2:
    time.sleep(0.05)
time.sleep(0.5)
full = Counter(key(e) for e in json.load(open(trace_path))["traceEvents"] if e.get("ph") == "X")
computes = sum(n for k, n in full.items() if k[3] in ("F", "B"))
print(f"live: {sum(live.values())} actions, trace: {sum(full.values())} actions ({computes} F/B)")
# interleaved 1F1B, 4 stages on 2 ranks, 4 micro-batches: 16 F + 16 B + 4 U per step
assert computes == steps * 32, f"FAIL: the trace has {computes} F/B, expected {steps * 32}"
missing = full - live
extra = live - full
assert not missing, f"FAIL: {sum(missing.values())} actions never arrived, e.g. {sorted(missing)[:3]}"
assert not extra, f"FAIL: {sum(extra.values())} actions arrived that the trace lacks, e.g. {sorted(extra)[:3]}"
markers = [e["name"] for e in lines if e.get("ph") == "i"]
assert markers == [f"step {k}" for k in range(steps)], f"FAIL: step markers {markers}"
mem = {e["pid"] for e in lines if e.get("ph") == "C"}
assert mem == {0, 1}, f"FAIL: memory samples from ranks {sorted(mem)}"
print("PASS")
PY
wait $job || { echo "FAIL: the job failed"; cat "$tmp/out.txt"; exit 1; }

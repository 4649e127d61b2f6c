#!/usr/bin/env python3
"""send_hold.py TRACE...: how long a measured transfer took from its send's posting to its receive's
completion, split by whether the receiver had posted that receive before the send was posted.

Gloo holds a send whose receive is not posted yet until the sender's I/O thread handles the receiver's
notice; under `pippy run --bind-cores` that thread shares the rank's core with its compute at nice 19, so
the data waits for the sender's next compute action to end. The simulator's link has one latency for both.
Pairs each SEND event with the first RECV of the same transfer (peer, stage, micro-batch, direction) that
completes after it. Prints, per direction and stage, the count and median of each case in microseconds.
"Posted" is the RECV event's start, when the rank's receiver asked for it: a receive posted a step ahead
(tensor_channel::post_ahead) is on the wire earlier than its event says."""
import json
import statistics
import sys
from collections import defaultdict


def transfers(path):
    events = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X"]
    receives = defaultdict(list)
    for e in events:
        a = e.get("args", {})
        if a.get("kind") in ("RECV_F", "RECV_B"):
            receives[(e["pid"], a["kind"], a["stage"], a["microbatch"])].append((e["ts"], e["ts"] + e["dur"]))
    for e in events:
        a = e.get("args", {})
        if a.get("kind") not in ("SEND_F", "SEND_B"):
            continue
        forward = a["kind"] == "SEND_F"
        key = (a["peer"], "RECV_F" if forward else "RECV_B", a["stage"] + (1 if forward else -1), a["microbatch"])
        posted_end = e["ts"] + e["dur"]
        later = [r for r in receives.get(key, []) if r[1] > posted_end]
        if later:
            recv_posted, recv_done = min(later, key=lambda r: r[1])
            yield f"{a['kind']} stage {a['stage']}", recv_posted <= e["ts"], recv_done - posted_end


for path in sys.argv[1:]:
    cases = defaultdict(lambda: ([], []))
    for name, posted_first, took in transfers(path):
        cases[name][0 if posted_first else 1].append(took)
    print(path)
    for name, (ahead, behind) in sorted(cases.items()):
        def show(v):
            return f"n={len(v)} median {statistics.median(v):.0f} us" if v else "n=0"
        print(f"  {name}: receive posted first {show(ahead)}; send first {show(behind)}")

#!/usr/bin/env python3
# transfer_overlap.py TRACE.json: how much compute time a transfer takes from the rank it completes on.
# Reads a measured Chrome trace (`--trace` of a run: compute actions on tid 0, sends and receives on
# tid 1). For each compute action it counts the sends and receives of its rank that end inside it, prints
# per stage and kind the actions' mean time relative to their overall mean by that count, and the least-
# squares extra time per such transfer (each kind's actions with none as its base). The simulator treats
# transfers as free for compute; this is the size of what that leaves out (bench/RESULTS-fidelity.md).
import bisect
import json
import statistics as st
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: transfer_overlap.py TRACE.json")
    with open(sys.argv[1]) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    compute = [e for e in events if e["tid"] == 0]
    ends = {}
    for e in events:
        if e["args"].get("kind") in ("SEND_F", "SEND_B", "RECV_F", "RECV_B"):  # transfers, not REDUCE_GRAD
            ends.setdefault(e["pid"], []).append(e["ts"] + e["dur"])
    for v in ends.values():
        v.sort()
    by_kind = {}
    for e in compute:
        mine = ends.get(e["pid"], [])
        n = bisect.bisect_left(mine, e["ts"] + e["dur"]) - bisect.bisect_left(mine, e["ts"])
        by_kind.setdefault((e["args"]["kind"], e["args"]["stage"]), []).append((n, e["dur"]))
    num = den = 0.0
    for k in sorted(by_kind):
        v = by_kind[k]
        mean = st.mean(d for _, d in v)
        groups = {}
        for n, d in v:
            groups.setdefault(min(n, 3), []).append(d)
        print(f"{k[0]} stage {k[1]}: " + "  ".join(
            f"{n}{'+' if n == 3 else ''} transfers: {len(g)} x {st.mean(g) / mean:.3f}" for n, g in sorted(groups.items())))
        if 0 in groups and mean > 0:
            base = st.mean(groups[0])
            for n, d in v:
                num += (d - base) * n
                den += n * n
    if den:
        print(f"extra compute time per transfer ending inside an action: {num / den:.0f} us")


if __name__ == "__main__":
    main()

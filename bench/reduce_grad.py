#!/usr/bin/env python3
"""reduce_grad.py MEASURED.json PREDICTED.json: the replicas' gradient collectives (REDUCE_GRAD) of a
pp x dp run against the simulator's, per stage: the mean time from posting to done, and the mean time
of it the rank sat idle waiting (exposed: from the end of the rank's last compute before the stage's U,
or the posting if later, to the collective's end, where U had not started by then). The measured
trace's first step is left out (warm-up). Prints one line per stage and a last line
`mean REDUCE_GRAD ms measured <m> predicted <p> exposed measured <m> predicted <p>`."""
import bisect
import json
import statistics as st
import sys
from collections import defaultdict

COMPUTE = ("F", "I", "W", "B", "U")


def windows(path, skip_first):
    with open(path) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    by = defaultdict(lambda: defaultdict(list))
    ends = defaultdict(list)  # per rank: the ends of its compute actions other than U
    for e in sorted(events, key=lambda e: e["ts"]):
        kind = e["args"]["kind"]
        by[(e["pid"], e["args"]["stage"])][kind].append(e)
        if kind in COMPUTE and kind != "U":
            ends[e["pid"]].append(e["ts"] + e["dur"])
    for v in ends.values():
        v.sort()
    out = {}
    for (rank, stage), kinds in by.items():
        pairs = list(zip(kinds["REDUCE_GRAD"], kinds["U"]))[1 if skip_first else 0:]
        if not pairs:
            continue
        durations, exposed = [], []
        for s, u in pairs:
            mine = ends[rank]
            i = bisect.bisect_right(mine, u["ts"])
            free = max(mine[i - 1] if i else s["ts"], s["ts"])  # the rank had nothing else to run from here
            durations.append(s["dur"])
            exposed.append(max(0.0, min(s["ts"] + s["dur"], u["ts"]) - free))
        out[(rank, stage)] = (durations, exposed)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: reduce_grad.py MEASURED.json PREDICTED.json")
    measured, predicted = windows(sys.argv[1], True), windows(sys.argv[2], False)
    if not measured or not predicted:
        sys.exit("reduce_grad.py: a trace without REDUCE_GRAD (not a pp x dp run?)")
    for key in sorted(set(measured) | set(predicted)):
        m, p = measured.get(key), predicted.get(key)

        def show(w):
            return f"{st.mean(w[0]) / 1000:.2f} ms, exposed {st.mean(w[1]) / 1000:.2f} ms" if w else "none"
        print(f"rank {key[0]} stage {key[1]}: measured {show(m)}; predicted {show(p)}")

    def mean(ws, i):
        return st.mean(d for w in ws.values() for d in w[i]) / 1000
    print(f"mean REDUCE_GRAD ms measured {mean(measured, 0):.2f} predicted {mean(predicted, 0):.2f} "
          f"exposed measured {mean(measured, 1):.2f} predicted {mean(predicted, 1):.2f}")


if __name__ == "__main__":
    main()

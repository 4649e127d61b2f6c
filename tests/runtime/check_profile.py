#!/usr/bin/env python3
"""check_profile.py TRACE.json COSTS.json --steps N [--param-bytes B0,B1,...] [--activation-bytes S=B|B'...]

Checks a cost file written by `--profile` against the trace of the same run (`--trace`), recomputed here
from the trace file alone: for every stage, F, I, W, B and U are the mean durations of that stage's
actions of that kind in the steps after the first (on each rank, the actions that start after the rank's
step-0 optimizer steps end), less arrival_cost_us times their mean count of receives of the rank that
ended inside them and before their start plus the kind's median time; arrival_cost_us is what the
run's transport probe measured (a finite number, at least 0 and below a step's longest action, as the
runs this checks are multi-process); with only full backwards measured I = W = B / 2, with only I and W
B = I + W.
Every time must be positive (I may be 0: stage 0 has no input gradient to compute). --param-bytes: the exact bytes of each stage's parameters (a closed form of the
model); --activation-bytes S=B|B'...: stage S's value is one of these (one micro-batch's boundary output).
Exit 1 with the differences listed.
"""
import argparse
import bisect
import json
import math
import sys
from collections import defaultdict

COMPUTE = ("F", "I", "W", "B", "U")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("costs")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--param-bytes", default="")
    ap.add_argument("--activation-bytes", action="append", default=[])
    ap.add_argument("--ranks", type=int, default=0, help="probed links: one per ordered pair of these ranks")
    ap.add_argument("--layer-outputs", default="", help="the per-layer profile's output bytes, layer by layer")
    ap.add_argument("--microbatch-rows", type=int, default=0)
    ap.add_argument("--layer-sizes", default="",
                    help="ROWS,ROWS,...: every layer also timed at these micro-batch sizes (other_sizes, by rows), "
                         "the layers' total F and B growing with the rows, and each layer with parameters "
                         "timing its optimizer step (U)")
    a = ap.parse_args()
    bad = []
    with open(a.trace) as f:
        trace = json.load(f)
    with open(a.costs) as f:
        costs = json.load(f)
    if costs.get("unit") != "us" or costs.get("source") != "measured":
        bad.append(f"unit/source {costs.get('unit')!r}/{costs.get('source')!r}, expected 'us'/'measured'")
    stages = costs.get("stages", [])
    by_rank = defaultdict(list)
    for e in trace["traceEvents"]:
        if e.get("ph") == "X" and e["args"].get("kind") in COMPUTE:
            by_rank[e["pid"]].append(e)
    if not by_rank:
        bad.append("the trace has no compute actions")
    receive_ends = defaultdict(list)
    for e in trace["traceEvents"]:
        if e.get("ph") == "X" and e["args"].get("kind", "").startswith("RECV"):
            receive_ends[e["pid"]].append(e["ts"] + e["dur"])
    for v in receive_ends.values():
        v.sort()
    samples = defaultdict(list)  # (stage, kind) -> durations in the steps after the first
    arrivals = {}  # (stage, kind) -> receives that ended inside each of them
    kept = defaultdict(list)  # (stage, kind) -> their events
    for rank, evs in by_rank.items():
        evs.sort(key=lambda e: e["ts"])
        updates = [e for e in evs if e["args"]["kind"] == "U"]
        per_step = len(updates) // a.steps
        if per_step < 1 or len(updates) != per_step * a.steps:
            bad.append(f"rank {rank}: {len(updates)} optimizer steps in {a.steps} steps")
            continue
        first_step_end = max(u["ts"] + u["dur"] for u in updates[:per_step])
        for e in evs:
            if e["ts"] >= first_step_end:
                samples[(e["args"]["stage"], e["args"]["kind"])].append(e["dur"])
                kept[(e["args"]["stage"], e["args"]["kind"])].append(e)
    for key, evs in kept.items():
        median = sorted(samples[key])[len(evs) // 2]  # counted within the kind's median time
        arrivals[key] = [bisect.bisect_left(receive_ends[e["pid"]], e["ts"] + min(e["dur"], median))
                         - bisect.bisect_right(receive_ends[e["pid"]], e["ts"]) for e in evs]
    per_arrival = costs.get("arrival_cost_us", 0.0)  # the writer leaves out a 0
    longest = max((d for ds in samples.values() for d in ds), default=0.0)
    if not isinstance(per_arrival, (int, float)) or not math.isfinite(per_arrival) or not 0 <= per_arrival < longest:
        bad.append(f"arrival_cost_us {per_arrival!r}: not a number in [0, {longest}) us (the longest action)")
        per_arrival = 0.0
    print(f"arrival_cost_us {per_arrival} (probed)")
    n_stages = 1 + max((s for s, _ in samples), default=-1)
    if len(stages) != n_stages:
        bad.append(f"the cost file has {len(stages)} stages, the trace {n_stages}")
    for s, c in enumerate(stages[:n_stages]):
        want = {k: (sum(samples[(s, k)]) - per_arrival * sum(arrivals.get((s, k), []))) / len(samples[(s, k)])
                for k in COMPUTE if samples[(s, k)]}
        # An input received from another rank is the cost file's received_input_us, apart (the engines
        # add it back where the stage before, or after for a gradient, is on another rank).
        received, ranks = costs.get("received_input_us", {}), costs.get("stage_ranks", [])
        if len(ranks) == len(stages):
            if s > 0 and ranks[s - 1] != ranks[s] and "F" in want:
                want["F"] = max(0.0, want["F"] - received.get("F", 0.0))
            if s + 1 < len(stages) and ranks[s + 1] != ranks[s]:
                for k in ("B", "I"):
                    if k in want:
                        want[k] = max(0.0, want[k] - received.get("B", 0.0))
        elif received:
            bad.append(f"received_input_us {received} without a stage_ranks entry per stage")
        if "B" not in want and "I" in want and "W" in want:
            want["B"] = want["I"] + want["W"]
        if "I" not in want and "W" not in want and "B" in want:
            want["I"] = want["W"] = want["B"] / 2
        for k in COMPUTE:
            got = c.get(k)
            if not isinstance(got, (int, float)) or not math.isfinite(got) or got < 0 or (got == 0 and k != "I"):
                bad.append(f"stage {s} {k}: {got!r} is not a positive number")
            elif k not in want:
                bad.append(f"stage {s} {k}: {got} but the trace has no such action")
            elif abs(got - want[k]) > 0.5 + 1e-6 * want[k]:  # the trace keeps times to 0.25 us
                bad.append(f"stage {s} {k}: {got} us, the trace's mean is {want[k]} us")
        print(f"stage {s}: " + "  ".join(f"{k} {c.get(k)} (trace {want.get(k, float('nan')):.4g}, "
                                          f"{len(samples[(s, k)])} actions)" for k in COMPUTE))
    if a.param_bytes:
        want = [int(x) for x in a.param_bytes.split(",")]
        got = [c.get("param_bytes") for c in stages]
        if got != want:
            bad.append(f"param_bytes {got}, expected {want}")
    for spec in a.activation_bytes:
        s, allowed = spec.split("=")
        allowed = {int(x) for x in allowed.split("|")}
        got = stages[int(s)].get("activation_bytes") if int(s) < len(stages) else None
        if got not in allowed:
            bad.append(f"stage {s} activation_bytes {got}, expected one of {sorted(allowed)}")
    if a.ranks:
        links = {(l.get("src"), l.get("dst")): l for l in costs.get("links", [])}
        want = {(i, j) for i in range(a.ranks) for j in range(a.ranks) if i != j}
        if set(links) != want:
            bad.append(f"links for pairs {sorted(links)}, expected {sorted(want)}")
        for (i, j), l in links.items():
            lat, bw = l.get("latency_us"), l.get("bandwidth_gbps")
            # fit_link clamps a negative intercept (noise at small sizes) to latency 0; a link must still
            # cost something, in latency or in bandwidth.
            if (not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lat, bw)) or lat < 0 or bw < 0
                    or (lat == 0 and bw == 0)):
                bad.append(f"link {i}->{j}: latency {lat!r} us, bandwidth {bw!r} GB/s")
            probe = l.get("probe_latency_us", 0)
            if not isinstance(probe, (int, float)) or not math.isfinite(probe) or probe < 0:
                bad.append(f"link {i}->{j}: probe_latency_us {probe!r}")
            # One ping-pong measures both directions' bandwidth; a latency comes from the run's waits where
            # it has some, so the two directions may differ there.
            back = links.get((j, i), {})
            if back.get("bandwidth_gbps") != bw:
                bad.append(f"link {i}->{j} and {j}->{i} differ in bandwidth (one ping-pong measures both)")
        print(f"links: " + "  ".join(f"{i}->{j} {l['latency_us']:.1f} us (probe {l.get('probe_latency_us', 0):.1f}) {l['bandwidth_gbps']:.3g} GB/s"
                                     for (i, j), l in sorted(links.items())))
    if a.layer_outputs:
        layers = costs.get("layers", [])
        want = [int(x) for x in a.layer_outputs.split(",")]
        got = [l.get("output_bytes") for l in layers]
        if got != want:
            bad.append(f"layers' output_bytes {got}, expected {want}")
        for k, l in enumerate(layers):
            for key in ("F", "I", "W", "B"):
                v = l.get(key)
                if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    bad.append(f"layers[{k}].{key}: {v!r}")
            if not (l.get("F", 0) > 0 and l.get("B", 0) > 0):
                bad.append(f"layers[{k}]: F and B must take time ({l.get('F')!r}, {l.get('B')!r})")
        total = sum(l.get("param_bytes", 0) for l in layers)
        if total != sum(c.get("param_bytes", 0) for c in stages):
            bad.append(f"the layers hold {total} parameter bytes, the stages {sum(c.get('param_bytes', 0) for c in stages)}")
    if a.layer_sizes:
        want_rows = [int(r) for r in a.layer_sizes.split(",")]
        layers = costs.get("layers", [])
        if not layers:
            bad.append("no layers")
        for k, l in enumerate(layers):
            got = [z.get("rows") for z in l.get("other_sizes", [])]
            if got != want_rows:
                bad.append(f"layers[{k}] timed at rows {got}, expected {want_rows}")
            if l.get("param_bytes", 0) > 0 and not l.get("U", 0) > 0:
                bad.append(f"layers[{k}] holds parameters but its optimizer step took {l.get('U', 0)!r} us")
        if layers and not bad:
            for key in ("F", "B"):  # the layers' total at each size, by rows: more rows take longer
                by_rows = sorted([(costs.get("microbatch_rows"), sum(l[key] for l in layers))] +
                                 [(r, sum(l["other_sizes"][i][key] for l in layers)) for i, r in enumerate(want_rows)])
                totals = [t for _, t in by_rows]
                if any(b <= a_ for a_, b in zip(totals, totals[1:])):
                    bad.append(f"the layers' total {key} by rows {by_rows} does not grow with the rows")
    if a.microbatch_rows and costs.get("microbatch_rows") != a.microbatch_rows:
        bad.append(f"microbatch_rows {costs.get('microbatch_rows')!r}, expected {a.microbatch_rows}")
    overhead = costs.get("action_overhead_us")
    if not isinstance(overhead, (int, float)) or not math.isfinite(overhead) or overhead < 0:
        bad.append(f"action_overhead_us {overhead!r} is not a non-negative number")
    # Step-to-step noise, refitted: each action's times over its own mean across the steps after the
    # first, widened by sqrt(n / (n - 1)), pooled; 64 quantiles at (i + 0.5) / 64, scaled to a mean of 1.
    per_action = defaultdict(list)
    for evs in kept.values():
        for e in evs:
            per_action[(e["pid"], e["args"]["stage"], e["args"]["kind"], e["args"].get("microbatch"))].append(e["dur"])
    want_noise = []
    if a.steps - 1 >= 3:
        factors = []
        for d in per_action.values():
            m = sum(d) / len(d)
            if len(d) >= 2 and m > 0:
                factors += [max(0.0, 1 + (x / m - 1) * math.sqrt(len(d) / (len(d) - 1))) for x in d]
        factors.sort()
        for i in range(64 if factors else 0):
            x = min(max((i + 0.5) / 64 * len(factors) - 0.5, 0), len(factors) - 1)
            k = int(x)
            want_noise.append(factors[k] + (x - k) * (factors[k + 1] - factors[k]) if k + 1 < len(factors) else factors[k])
        if want_noise:
            mean = sum(want_noise) / len(want_noise)
            want_noise = [q / mean for q in want_noise]
    got_noise = costs.get("noise", [])
    if len(got_noise) != len(want_noise) or any(abs(g - w) > 2e-3 for g, w in zip(got_noise, want_noise)):
        bad.append(f"noise {got_noise[:4]}... ({len(got_noise)}), refitted from the trace {want_noise[:4]}... ({len(want_noise)})")
    print(f"noise: {len(got_noise)} quantiles" + (f", {got_noise[0]:.3f} to {got_noise[-1]:.3f}" if got_noise else ""))
    for b in bad:
        print("FAIL: " + b)
    if bad:
        sys.exit(1)
    print(f"OK: {a.costs} matches {a.trace} ({n_stages} stages, steps 2..{a.steps})")


if __name__ == "__main__":
    main()

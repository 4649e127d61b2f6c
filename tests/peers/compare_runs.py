#!/usr/bin/env python3
"""Compares training runs: their `step K loss X` lines and, optionally, their final parameters.

    compare_runs.py --losses A.txt B.txt [C.txt ...] [--params "DIR/final.rank*.pt" OTHER.pt ...] [--tol 1e-5]

Loss files must hold the same steps; every loss must be finite and equal the first file's to `tol` relative
(nan and inf never pass: a loss, or a tensor holding one, differs by inf). A --params argument is a glob
(the files are merged: each rank wrote its own stages') or one file; each set must have the first set's
names and every tensor must equal it to `tol` (max |a-b| <= tol * max(1, max |a|)). The
GPT's tied head may appear as `lm_head.weight` beside `tok_emb.weight` (the same values): names that one
side has and the other lacks are an error unless they are that alias. Prints what it compared; exit 1 on
a difference.
"""
import argparse
import glob
import math
import sys

import torch

from pp_train import load_pt  # reads our C++ files (torch::pickle_save) and torch.save's alike

TIED_ALIASES = {"lm_head.weight": "tok_emb.weight"}


def losses(path):
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "step" and parts[2] == "loss":
                out[int(parts[1])] = float(parts[3])
    if not out:
        sys.exit(f"{path}: no `step K loss X` lines")
    return out


def rel_diff(got, ref):
    """|got - ref| relative to |ref|; inf when either is nan or inf, which must never compare equal (a nan
    would also vanish from max())."""
    if not (math.isfinite(got) and math.isfinite(ref)):
        return math.inf
    return abs(got - ref) / max(abs(ref), 1e-12)


def params(pattern):
    files = sorted(glob.glob(pattern)) or sys.exit(f"{pattern}: no such file")
    merged = {}
    for f in files:
        for name, t in load_pt(f).items():
            name = TIED_ALIASES.get(name, name)
            if name in merged and not torch.equal(merged[name], t):
                sys.exit(f"{f}: {name} differs from another rank's copy")
            merged[name] = t
    return merged


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--losses", nargs="+", required=True)
    ap.add_argument("--params", nargs="*", default=[])
    ap.add_argument("--tol", type=float, default=1e-5)
    a = ap.parse_args()
    bad = 0
    ref = losses(a.losses[0])
    for path in a.losses[1:]:
        got = losses(path)
        if sorted(got) != sorted(ref):
            print(f"FAIL {path}: steps {sorted(got)} vs {sorted(ref)} in {a.losses[0]}")
            bad += 1
            continue
        worst = max(rel_diff(got[k], ref[k]) for k in ref)
        ok = worst <= a.tol
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} losses {path} vs {a.losses[0]}: {len(ref)} steps, max relative difference {worst:.2e}")
    if a.params:
        first = params(a.params[0])
        for pattern in a.params[1:]:
            other = params(pattern)
            if set(other) != set(first):
                print(f"FAIL {pattern}: parameters {sorted(set(other) ^ set(first))} are on one side only")
                bad += 1
                continue
            worst, where = 0.0, ""
            for name, t in first.items():
                o = other[name]
                if not (torch.isfinite(o).all() and torch.isfinite(t).all()):
                    d = math.inf  # a nan or an inf is never equal (max() and > would drop a nan)
                else:
                    d = (o.double() - t.double()).abs().max().item() / max(1.0, t.abs().max().item())
                if d > worst:
                    worst, where = d, name
            ok = worst <= a.tol
            bad += not ok
            print(f"{'ok  ' if ok else 'FAIL'} parameters {pattern} vs {a.params[0]}: {len(first)} tensors, "
                  f"max difference {worst:.2e}{' (' + where + ')' if where else ''}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

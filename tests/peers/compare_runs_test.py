#!/usr/bin/env python3
"""compare_runs_test.py: compare_runs.py (what equivalence.sh and hf_models.sh decide with) passes equal runs
and fails a differing loss or tensor, and any nan or inf in a loss or a tensor, on either side (a nan would
otherwise vanish from max() and from `>`). One process: compare_runs.main() under each argv."""
import contextlib
import io
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_runs  # noqa: E402


def run(args):
    sys.argv = ["compare_runs.py", *args]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            compare_runs.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue()


def main():
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)

        def losses(name, *values):
            with open(name, "w") as f:
                f.writelines(f"step {k} loss {v}\n" for k, v in enumerate(values))
            return name

        ref = losses("ref.txt", "2.5", "2.25", "2")
        same = losses("same.txt", "2.5", "2.25", "2.00001")
        off = losses("off.txt", "2.5", "2.25", "2.001")
        w = torch.tensor([1.0, 2.0, 3.0])
        torch.save({"w": w}, "p.pt")
        torch.save({"w": w + 1e-3}, "p_off.pt")
        torch.save({"w": torch.tensor([1.0, float("nan"), 3.0])}, "p_nan.pt")
        torch.save({"w": torch.tensor([1.0, float("inf"), 3.0])}, "p_inf.pt")

        cases = [("ok", ["--losses", ref, same, ref, "--params", "p.pt", "p.pt"]),
                 ("fail", ["--losses", ref, off]),
                 ("fail", ["--losses", ref, ref, "--params", "p.pt", "p_off.pt"])]
        for x in ("nan", "-nan", "inf", "-inf"):
            one = losses(f"one{x}.txt", "2.5", x, "2")
            every = losses(f"all{x}.txt", x, x, x)
            cases += [("fail", ["--losses", ref, one]), ("fail", ["--losses", one, ref]),
                      ("fail", ["--losses", every, every])]
        for x in ("p_nan.pt", "p_inf.pt"):
            cases += [("fail", ["--losses", ref, ref, "--params", "p.pt", x]),
                      ("fail", ["--losses", ref, ref, "--params", x, "p.pt"]),
                      ("fail", ["--losses", ref, ref, "--params", x, x])]
        for want, args in cases:
            code, out = run(args)
            got = "ok" if code == 0 else "fail"
            if got != want:
                bad += 1
                print(f"FAIL: compare_runs.py {' '.join(args)} said {got} (exit {code}), expected {want}:\n{out}")
            else:
                print(f"ok: {got}: {' '.join(args)}")
    if bad:
        sys.exit(1)
    print("OK: compare_runs.py rejects differing, nan and inf losses and tensors")


if __name__ == "__main__":
    main()

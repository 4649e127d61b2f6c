#!/usr/bin/env python3
"""Checks what `pippy split MODEL --out DIR` wrote, from Python, as a runtime that is not ours would use it.

    python check_split_out.py MODEL.pt DIR [--batch 5] [--seed 1]

torch.jit.load's DIR/stage{N}.pt, chains them as DIR/pipe.json says on a batch of --batch rows (another
batch size than the one traced) and compares the result with the unsplit model's to 1e-5. Also checks that
the stages together hold every parameter and buffer of the model under its own name, with its values, and
that the shapes in pipe.json are those the stages produce for the traced batch size. Exit 0 when all
holds; otherwise prints what differs and exits 1. Meant for models without data-dependent control flow
(a traced branch is baked into the stages, so another batch may take the other one in the model).
"""
import argparse
import json
import os
import sys

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}


def fail(message):
    print("check_split_out: " + message)
    sys.exit(1)


def make_inputs(specs, rows, generator):
    xs = []
    for spec in specs:
        shape = [rows] + spec["shape"][1:]
        dtype = DTYPES[spec["dtype"]]
        if dtype.is_floating_point:
            xs.append(torch.randn(shape, generator=generator, dtype=dtype))
        else:
            xs.append(torch.randint(0, spec.get("high", 2), shape, generator=generator, dtype=dtype))
    return xs


def as_list(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return list(out)


def run_stages(stages, pipe, xs):
    """Every stage's outputs, each stage fed from the pipe's inputs and earlier stages as pipe.json says."""
    outs = []
    for s, (module, desc) in enumerate(zip(stages, pipe["stages"])):
        args = [xs[i["index"]] if i["source"] == "input" else outs[i["stage"]][i["index"]] for i in desc["inputs"]]
        result = module(*args)
        if not isinstance(result, tuple):
            fail(f"stage {s} returned {type(result).__name__}, not a tuple")
        if len(result) != len(desc["outputs"]):
            fail(f"stage {s} returned {len(result)} tensors, pipe.json lists {len(desc['outputs'])}")
        outs.append(list(result))
    return outs


def final_outputs(pipe, outs, xs):
    return [xs[o["index"]] if o["source"] == "input" else outs[o["stage"]][o["index"]] for o in pipe["outputs"]]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("dir")
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with open(os.path.join(args.dir, "pipe.json")) as f:
        pipe = json.load(f)
    model = torch.jit.load(args.model)
    stages = [torch.jit.load(os.path.join(args.dir, d["file"])) for d in pipe["stages"]]

    # State: every tensor of the model on exactly the stages that hold it, under the same name.
    want = dict(model.named_parameters())
    want.update(dict(model.named_buffers()))
    seen = {}
    tied = {t["name"]: set(t["stages"]) for t in pipe["tied"]}
    for s, (module, desc) in enumerate(zip(stages, pipe["stages"])):
        params = dict(module.named_parameters())
        buffers = dict(module.named_buffers())
        if sorted(params) != sorted(desc["parameter_names"]):
            fail(f"stage {s}: parameters {sorted(params)} but pipe.json lists {sorted(desc['parameter_names'])}")
        if sorted(buffers) != sorted(desc["buffer_names"]):
            fail(f"stage {s}: buffers {sorted(buffers)} but pipe.json lists {sorted(desc['buffer_names'])}")
        if sum(p.numel() for p in params.values()) != desc["parameters"]:
            fail(f"stage {s}: parameter count differs from pipe.json's {desc['parameters']}")
        for name, t in {**params, **buffers}.items():
            if name not in want:
                fail(f"stage {s} holds {name}, which the model does not have")
            if not torch.equal(t, want[name]):
                fail(f"stage {s}: {name} differs from the model's")
            if name in seen and s not in tied.get(name, ()):
                fail(f"{name} is held by stages {seen[name]} and {s} but is not listed as tied")
            seen[name] = s
    # A tied tensor is registered under several names in the model; the stages hold it under the first.
    aliases = {a for t in pipe["tied"] for a in t["aliases"]}
    missing = sorted(set(want) - set(seen) - aliases)
    if missing:
        fail(f"no stage holds {missing}")

    with torch.no_grad():
        # Shapes in pipe.json are the traced micro-batch's: the stages must produce exactly those.
        traced_rows = pipe["inputs"][0]["shape"][0]
        xs = make_inputs(pipe["inputs"], traced_rows, torch.Generator().manual_seed(args.seed))
        outs = run_stages(stages, pipe, xs)
        for s, desc in enumerate(pipe["stages"]):
            for k, (o, meta) in enumerate(zip(outs[s], desc["outputs"])):
                if list(o.shape) != meta["shape"] or str(o.dtype) != "torch." + meta["dtype"]:
                    fail(f"stage {s} output {k}: {o.dtype} {list(o.shape)}, pipe.json says {meta['dtype']} {meta['shape']}")

        xs = make_inputs(pipe["inputs"], args.batch, torch.Generator().manual_seed(args.seed))
        split = final_outputs(pipe, run_stages(stages, pipe, xs), xs)
        whole = as_list(model(*xs))
    if len(split) != len(whole):
        fail(f"the stages give {len(split)} outputs, the model {len(whole)}")
    for i, (a, b) in enumerate(zip(split, whole)):
        if a.shape != b.shape:
            fail(f"output {i}: shape {list(a.shape)}, the model's {list(b.shape)}")
        if a.dim() > 0 and a.shape[0] != args.batch:
            fail(f"output {i} has {a.shape[0]} rows for a batch of {args.batch}")
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            fail(f"output {i} holds a nan or an inf (split: {not torch.isfinite(a).all().item()}, model: {not torch.isfinite(b).all().item()})")
        diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
        if diff > 1e-5:
            fail(f"output {i} differs from the model's by {diff:.3g}")
        print(f"output {i}: {list(a.shape)} max |split - model| = {diff:.3g}")
    print(f"ok: {len(stages)} stages, batch {args.batch}")


if __name__ == "__main__":
    main()

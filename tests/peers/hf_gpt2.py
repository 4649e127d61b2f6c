#!/usr/bin/env python3
"""A model nobody here wrote: Hugging Face's GPT2LMHeadModel, traced to TorchScript for scripted-lm.

Builds transformers' GPT2LMHeadModel from a small GPT2Config (random weights, seeded, nothing downloaded,
dropout probabilities 0, eval mode), traces it with torch.jit.trace on one micro-batch of token ids and
saves it; writes the training data; trains the unsplit Python model for reference.

    python hf_gpt2.py --out DIR [--batch 12] [--microbatches 6] [--steps 3] [--lr 0.1] [--seed 0]
                      [--torchscript] [--torch-pipelining STAGES]

Written to DIR:
    model.pt      the traced module: forward(input_ids: int64 [batch/microbatches, seq]) -> (logits,), a tuple
                  of one float32 [batch/microbatches, seq, vocab] tensor (the config's return_dict=False
                  output without a loss or a cache)
    batches.pt    {"x.K": int64 [batch, seq], "y.K": int64 [batch, seq]} for K in 0..steps-1 (torch.save):
                  sequences counting up from a random token by a random stride (1..3) mod vocab, y = x
                  shifted by one token (the next tokens)
Printed:
    stdout        `step K loss X` (%.9g) of the unsplit eager Python model trained on the whole batch:
                  cross entropy of logits.reshape(-1, V) vs y.reshape(-1), SGD(lr, momentum 0.9)
    stderr        what the trace holds (`hf_gpt2: tie ...`) and checks

The tie: transformers ties lm_head.weight to transformer.wte.weight (one Parameter). Without
`torchscript=True` in the config the traced file keeps it: after torch.jit.load both attributes are the same
tensor (checked here; exit 1 otherwise). With `--torchscript` (transformers' documented switch for
torch.jit.trace) the two are cloned into separate tensors, as transformers documents, and the LM head no
longer trains with the embedding; we do not use that file in the tests.

Why the trace needs a hand: GPT2Model always builds position_ids, and transformers 4.57's
create_causal_mask then looks for packed sequences (masking_utils.find_packed_sequence_indices) and builds
the mask with an indexing function inside torch.vmap, which torch.jit.trace cannot record
(`RuntimeError: unordered_map::at`, with or without torchscript=True, sdpa or eager attention). For
input_ids alone the positions are 0..T-1, one sequence per row, so that mask is all true: we trace with
the detection returning None, which leaves exactly the causal mask (traced fine, still built with vmap).

The trace freezes the micro-batch shape: the causal mask's expand records the batch and sequence sizes
as constants, so model.pt runs only on [batch/microbatches, seq] (checked here against the eager model).

--torch-pipelining STAGES additionally splits the same model with torch.distributed.pipelining.pipeline()
(torch.export underneath, SplitPoint.BEGINNING at transformer.h.K) and trains the split module in this
process on the same batches; it prints `pipelining: ...` lines on stderr (time to split, losses, the
largest difference from the eager losses).

Exit status: 0 success, 1 a check failed, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")  # TracerWarnings of transformers' code, the NumPy warning of the wheel

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def log(msg: str) -> None:
    sys.stderr.write(f"hf_gpt2: {msg}\n")
    sys.stderr.flush()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for model.pt and batches.pt")
    p.add_argument("--batch", type=int, default=12, help="sequences per step")
    p.add_argument("--microbatches", type=int, default=6, help="the trace's batch is batch / microbatches")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--embd", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--seq", type=int, default=16, help="sequence length (= n_positions)")
    p.add_argument("--torchscript", action="store_true",
                   help="trace with transformers' torchscript=True (unties the LM head; not for the tests)")
    p.add_argument("--torch-pipelining", type=int, default=0, metavar="STAGES",
                   help="also split with torch.distributed.pipelining.pipeline() and train that")
    a = p.parse_args()
    if a.batch <= 0 or a.microbatches <= 0 or a.batch % a.microbatches:
        p.error(f"--batch {a.batch} must be a positive multiple of --microbatches {a.microbatches}")
    if a.torch_pipelining and not 1 <= a.torch_pipelining <= a.layers:
        p.error(f"--torch-pipelining must be between 1 and --layers {a.layers}")
    return a


def make_model(a):
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    transformers.logging.set_verbosity_error()

    torch.manual_seed(a.seed)
    cfg = GPT2Config(n_layer=a.layers, n_embd=a.embd, n_head=a.heads, vocab_size=a.vocab, n_positions=a.seq,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False, return_dict=False,
                     torchscript=a.torchscript)
    return GPT2LMHeadModel(cfg).eval()


def make_batches(a) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(a.seed * 1000003 + 1)
    out = {}
    for k in range(a.steps):
        start = torch.randint(0, a.vocab, (a.batch, 1), generator=g)
        stride = torch.randint(1, 4, (a.batch, 1), generator=g)
        seq = (start + stride * torch.arange(a.seq + 1).unsqueeze(0)) % a.vocab
        out[f"x.{k}"] = seq[:, :-1].contiguous()
        out[f"y.{k}"] = seq[:, 1:].contiguous()
    return out


def lm_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


@contextlib.contextmanager
def no_packed_sequence_detection():
    """transformers' packed-sequence mask off (see the module's doc): for input_ids alone it is all true."""
    import transformers.masking_utils as mu

    saved = mu.find_packed_sequence_indices
    mu.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        mu.find_packed_sequence_indices = saved


def trace(model, example: torch.Tensor):
    """torch.jit.trace without the graph optimizer, before any forward of the model."""
    with no_packed_sequence_detection(), torch.jit.optimized_execution(False):
        return torch.jit.trace(model, (example,), check_trace=False)


def check_file(a, path: str, model, batches) -> None:
    loaded = torch.jit.load(path)
    wte, head = loaded.transformer.wte.weight, loaded.lm_head.weight
    same = wte is head or (wte.data_ptr() == head.data_ptr() and wte.shape == head.shape)
    names = [n for n, _ in loaded.named_parameters()]
    log(f"tie: after torch.jit.load, transformer.wte.weight and lm_head.weight are "
        f"{'one tensor' if same else 'two tensors'} ({len(names)} parameters; torchscript={a.torchscript})")
    if same == a.torchscript:
        raise SystemExit(f"hf_gpt2: FAIL: expected the tie {'cloned' if a.torchscript else 'kept'} in {path}")
    graph = str(loaded.inlined_graph)
    if "aten::detach" in graph:
        raise SystemExit(f"hf_gpt2: FAIL: the traced graph holds aten::detach nodes")
    mb = a.batch // a.microbatches
    x = batches["x.0"][:mb]
    with torch.no_grad():
        got, want = loaded(x), model(x)
    if not isinstance(got, tuple) or len(got) != 1:
        raise SystemExit(f"hf_gpt2: FAIL: the traced module returns {type(got).__name__}, not (logits,)")
    err = (got[0] - want[0]).abs().max().item()
    log(f"traced module at [{mb}, {a.seq}]: (logits,) {tuple(got[0].shape)}, max |traced - eager| = {err:.3g}")
    if err > 1e-5:
        raise SystemExit("hf_gpt2: FAIL: the traced module differs from the eager model")
    if a.batch != mb:  # document the frozen micro-batch shape
        try:
            with torch.no_grad():
                loaded(batches["x.0"])
            log(f"the traced module also runs on the whole batch [{a.batch}, {a.seq}]")
        except Exception as e:  # noqa: BLE001
            last = str(e).strip().splitlines()[-1]
            log(f"the traced module does not run on [{a.batch}, {a.seq}] (shape frozen by tracing): {last}")


def train(model, batches, steps: int, lr: float) -> list[float]:
    """The unsplit reference: the whole batch per step."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)  # the tied weight once
    losses = []
    for k in range(steps):
        loss = lm_loss(model(batches[f"x.{k}"])[0], batches[f"y.{k}"])
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


TIED = ("transformer.wte.weight", "lm_head.weight")


def torch_pipelining(a, batches, reference: list[float]) -> None:
    """Split with torch.distributed.pipelining.pipeline() and train the stages in this process.

    Pipe.__call__ detaches every stage's inputs (a forward-only test path), so the stages run under a plain
    fx.Interpreter. pipeline() unties the embedding/LM head: the stages hold separate copies (stage 0:
    transformer.wte.weight, the last stage: lm_head.weight, plus the original, unused, lm_head.weight on
    stage 0), and nothing sums their gradients; we sum them before the step, as a tied-weight all-reduce
    across ranks would, so the copies stay equal and the losses are the tied model's.
    """
    from torch.distributed.pipelining import SplitPoint, pipeline

    model = make_model(a)
    per = a.layers / a.torch_pipelining
    spec = {f"transformer.h.{round(s * per)}": SplitPoint.BEGINNING for s in range(1, a.torch_pipelining)}
    mb = a.batch // a.microbatches
    t0 = time.perf_counter()
    try:
        with no_packed_sequence_detection():
            pipe = pipeline(model, mb_args=(batches["x.0"][:mb],), split_spec=spec)
    except Exception as e:  # noqa: BLE001
        log(f"pipelining: pipeline() failed after {time.perf_counter() - t0:.1f} s: {type(e).__name__}: {e}")
        raise SystemExit(1)
    log(f"pipelining: pipeline() split into {pipe.num_stages} stages in {time.perf_counter() - t0:.1f} s "
        f"(split points {sorted(spec)})")
    gm = pipe.split_gm
    named = dict(gm.named_parameters(remove_duplicate=False))
    copies = [n for n in named if n.split(".", 1)[1] in TIED]
    log(f"pipelining: the tied weight arrives as {len({named[n].data_ptr() for n in copies})} tensors: "
        + ", ".join(copies))
    run = torch.fx.Interpreter(gm)
    opt = torch.optim.SGD(gm.parameters(), lr=a.lr, momentum=0.9)
    worst = 0.0
    for k in range(a.steps):
        x, y = batches[f"x.{k}"], batches[f"y.{k}"]
        total = 0.0
        for i in range(a.microbatches):  # the split module keeps the traced micro-batch shape
            rows = slice(i * mb, (i + 1) * mb)
            out = run.run(x[rows])
            logits = out[0] if isinstance(out, (tuple, list)) else out
            loss = lm_loss(logits, y[rows]) / a.microbatches
            loss.backward()
            total += loss.item()
        used = [named[n] for n in copies if named[n].grad is not None]
        summed = torch.stack([p.grad for p in used]).sum(0)
        for p in used:
            p.grad = summed.clone()
        opt.step()
        opt.zero_grad()
        rel = abs(total - reference[k]) / abs(reference[k])
        worst = max(worst, rel)
        log(f"pipelining: step {k} loss {total:.9g} (eager {reference[k]:.9g})")
    log(f"pipelining: largest relative difference from the eager losses {worst:.3g}")
    if worst > 1e-5:
        raise SystemExit(1)


def main() -> int:
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)
    model = make_model(a)
    batches = make_batches(a)
    path = os.path.join(a.out, "model.pt")
    t0 = time.perf_counter()
    traced = trace(model, batches["x.0"][: a.batch // a.microbatches])
    torch.jit.save(traced, path)
    log(f"traced and saved {path} in {time.perf_counter() - t0:.1f} s")
    torch.save(batches, os.path.join(a.out, "batches.pt"))
    check_file(a, path, model, batches)
    losses = train(model, batches, a.steps, a.lr)
    for k, loss in enumerate(losses):
        print(f"step {k} loss {loss:.9g}", flush=True)
    if a.torch_pipelining:
        torch_pipelining(a, batches, losses)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The models of PiPPy's own examples (BERT, GPT-2, T5, LLaMA), traced to shape-generic TorchScript files.

Builds one of transformers' BertForMaskedLM, GPT2LMHeadModel, T5ForConditionalGeneration or LlamaForCausalLM
from a tiny config (random weights, seeded, nothing downloaded, dropout probabilities 0, eval mode, no KV
cache), traces it with torch.jit.trace on one micro-batch and saves it; writes the training data, the eager
model's logits on step 0's whole batch, and trains the unsplit eager model for reference.

    python hf_models.py --model bert|gpt2|t5|llama --out DIR [--batch 8] [--microbatches 4] [--seq 16]
                        [--steps 3] [--lr 0.1] [--seed 0] [--layers 4] [--attn sdpa|eager] [--stock-mask]
    python hf_models.py --check-dynamic --model bert|gpt2|t5|llama|all [--out DIR] [same options]

Written to DIR:
    model.pt      the traced module, forward(x0[, x1]) -> (logits,): int64 inputs, a tuple of one float32
                  [rows, seq, vocab] tensor. bert, gpt2, llama: forward(input_ids [rows, seq]); t5:
                  forward(input_ids [rows, seq], decoder_input_ids [rows, seq_dec]) -> logits [rows, seq_dec,
                  vocab] (the encoder's last hidden state, transformers' second output, is left out). Traced on
                  [batch/microbatches, seq] but runs on any rows >= 1 and any length 1..max positions (64 or
                  2*seq), checked here (see "Shapes" below).
    data.pt       torch.save of {"x0.K", ["x1.K",] "y.K"} for K in 0..steps-1, all int64 [batch, seq]: inputs by
                  input index, y the targets of a cross entropy over the logits' last dimension. Sequences count
                  up from a random token by a random stride (1..3) mod the vocabulary, so the loss can fall.
                  bert: x0 = the sequence with ~15% of tokens replaced by [MASK] (= vocab-1), y = the original
                  tokens (every position counts); gpt2, llama: x0 = the sequence, y = x0 shifted by one (the next
                  tokens); t5: x0 = the first seq tokens (encoder), y = the next seq tokens (the decoder's labels,
                  tokens 1..vocab-1), x1 = y shifted right after decoder_start_token_id 0 (teacher forcing).
    reference.pt  torch.save of {"logits": float32 [batch, seq, vocab], "loss": float32 []}: the eager model's
                  output on step 0's whole batch (x0.0[, x1.0]) before any training, and its loss against y.0.
Printed:
    stdout        `step K loss X` (%.9g) of the unsplit eager model trained on the whole batch: cross entropy of
                  logits.reshape(-1, V) vs y.reshape(-1), SGD(lr, momentum 0.9) over model.parameters() (a tied
                  tensor once).
    stderr        `hf_models: ...` lines: what the file holds (ties, control flow, detach nodes) and the checks.

Checks (exit 1 when one fails): after torch.jit.load, the file's (logits,) equals the eager model's to 1e-5
on the traced micro-batch and on the whole batch; its inlined graph has no node with blocks (prim::If,
prim::Loop); the ties listed below survive the load (one tensor under several names); and the loaded file,
trained in Python exactly like the eager model, gives the same losses (relative 1e-5), so autograd through
the file (T5's in-place mask ops included) is right.

--check-dynamic (with --model all: every model) traces at [batch/microbatches, seq] and compares the loaded
file with the eager model, forward and parameter gradients, on other shapes: more and fewer rows, shorter and
longer sequences, [1, 1], [1, 7], and for T5 encoder and decoder lengths that differ. It prints one `dynamic:`
line per shape and exits 1 on any difference above 1e-5 or any error, listing the graph's nodes that hold
constant int lists with the traced sizes (the usual culprits: aten::view/reshape/expand). --out is optional
there (a temporary directory otherwise).

Shapes. Findings with torch 2.11 and transformers 4.57 (see `--check-dynamic`):
  - The tracer records tensor sizes (x.size(d), x.shape[d]) as graph values (aten::size), so every op that
    takes its sizes straight from a tensor stays generic; a size that goes through Python (an int in a
    Python loop, range(), a vmap, .item()) is frozen as a constant.
  - BERT (modeling_attn_mask_utils) and T5 (its own _prepare_4d_causal_attention_mask_with_cache_position,
    the relative position bias from torch.arange(size)) trace shape-generic as they are.
  - GPT-2 and LLaMA build their causal mask with masking_utils.create_causal_mask: first
    find_packed_sequence_indices, whose mask function torch.jit.trace cannot record through torch.vmap
    (`RuntimeError: unordered_map::at`), then sdpa_mask/eager_mask, which build the mask with four nested
    torch.vmap calls over index tensors: the trace records the unrolled result with the traced sizes as
    constants (aten::view [seq, 1], aten::expand [rows, 1, seq, seq], ...), so a stock trace runs only on the
    traced shape (--stock-mask keeps it so, to show it).
  - The workaround here (trace time only; the eager model keeps transformers' own masks): packed-sequence
    detection returns None (for input_ids alone the positions are 0..T-1 in every row, one sequence per row,
    so that mask is all true), and the "sdpa" and "eager" entries of masking_utils' AttentionMaskInterface
    build the causal mask from cache_position with plain tensor ops, cache_position[:, None] >=
    cache_position[None, :], shaped [1, 1, q, kv] and broadcast over rows and heads (bool for sdpa; 0 / dtype
    min for eager). It is exactly transformers' mask when there is no cache, padding or offset, and it refuses
    anything else. BERT under sdpa: _prepare_4d_attention_mask_for_sdpa returns None while tracing, as it
    does in eager mode for an all-ones mask (the only mask input_ids alone make); this drops a constant mask
    and its aten::detach node from the graph.
  - None of the four graphs has prim::If or prim::Loop: Python's control flow is resolved at trace time.

Ties (after torch.jit.load, one tensor under several names; model.parameters() lists it once):
    bert   bert.embeddings.word_embeddings.weight = cls.predictions.decoder.weight,
           cls.predictions.bias = cls.predictions.decoder.bias
    gpt2   transformer.wte.weight = lm_head.weight
    t5     shared.weight = encoder.embed_tokens.weight = decoder.embed_tokens.weight = lm_head.weight
    llama  none (LlamaConfig's tie_word_embeddings is False, as in Llama 2)

The forward: transformers' models take many optional arguments and return ModelOutputs; LlamaForCausalLM
cannot even run with return_dict=False in its config (the inner model then returns a tuple that the outer
one reads .last_hidden_state from). So each model gets an instance attribute `forward` that calls the class's
forward with return_dict=False (and use_cache=False) and returns (logits,); torch.jit.trace traces that
closure, and the file keeps the model's own parameter names (no wrapper module, no prefix).

Exit status: 0 success, 1 a check failed, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")  # TracerWarnings of transformers' code, the NumPy warning of the wheel

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MODELS = ("bert", "gpt2", "t5", "llama")
DEFAULT_ATTN = {"bert": "sdpa", "gpt2": "sdpa", "t5": "eager", "llama": "sdpa"}  # T5 has eager only
EXPECTED_TIES = {
    "bert": [["bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"],
             ["cls.predictions.bias", "cls.predictions.decoder.bias"]],
    "gpt2": [["transformer.wte.weight", "lm_head.weight"]],
    "t5": [["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"]],
    "llama": [],
}
TOL = 1e-5


def log(msg: str) -> None:
    sys.stderr.write(f"hf_models: {msg}\n")
    sys.stderr.flush()


def fail(msg: str) -> None:
    log(f"FAIL: {msg}")
    raise SystemExit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, choices=MODELS + ("all",))
    p.add_argument("--out", help="directory for model.pt, data.pt and reference.pt")
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--microbatches", type=int, default=4, help="the trace's rows are batch / microbatches")
    p.add_argument("--seq", type=int, default=16, help="sequence length (T5: encoder and decoder)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data")
    p.add_argument("--layers", type=int, default=4, help="transformer blocks (T5: encoder and decoder each)")
    p.add_argument("--hidden", type=int, default=32, help="hidden size (a multiple of 4; MLPs are twice as wide)")
    p.add_argument("--attn", choices=("sdpa", "eager"), help="attention implementation (default: sdpa; T5: eager)")
    p.add_argument("--stock-mask", action="store_true",
                   help="trace with transformers' own causal mask (GPT-2, LLaMA: frozen shapes; to show it)")
    p.add_argument("--check-dynamic", action="store_true",
                   help="only check that the traced file runs on other shapes (exit 1 if not)")
    a = p.parse_args()
    if a.batch <= 0 or a.microbatches <= 0 or a.batch % a.microbatches:
        p.error(f"--batch {a.batch} must be a positive multiple of --microbatches {a.microbatches}")
    if a.seq < 6 or a.steps < 1 or a.layers < 1 or a.hidden < 4 or a.hidden % 4:
        p.error("--seq must be at least 6, --steps and --layers at least 1, --hidden a positive multiple of 4")
    if a.model == "all" and not a.check_dynamic:
        p.error("--model all is for --check-dynamic")
    if not a.out and not a.check_dynamic:
        p.error("--out is required")
    if a.model == "t5" and a.attn == "sdpa":
        p.error("T5ForConditionalGeneration has no sdpa attention in transformers 4.57 (use eager)")
    return a


def max_positions(a) -> int:
    return max(64, 2 * a.seq)


def vocab(a) -> int:
    return 64


def make_model(a, name: str):
    """The model in eval mode, with `forward(x0[, x1]) -> (logits,)` bound to the instance."""
    import transformers
    from transformers import (BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                              LlamaForCausalLM, T5Config, T5ForConditionalGeneration)

    transformers.logging.set_verbosity_error()
    attn = a.attn or DEFAULT_ATTN[name]
    if name == "t5":
        attn = "eager"
    V, P, L, H = vocab(a), max_positions(a), a.layers, a.hidden
    torch.manual_seed(a.seed)
    if name == "bert":
        cfg = BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=4,
                         intermediate_size=2 * H, max_position_embeddings=P, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, pad_token_id=0, attn_implementation=attn)
        model = BertForMaskedLM(cfg)
    elif name == "gpt2":
        cfg = GPT2Config(n_layer=L, n_embd=H, n_head=4, vocab_size=V, n_positions=P, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False, attn_implementation=attn)
        model = GPT2LMHeadModel(cfg)
    elif name == "llama":
        cfg = LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=2 * H, num_hidden_layers=L,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=P,
                          attention_dropout=0.0, use_cache=False, attn_implementation=attn)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = T5Config(vocab_size=V, d_model=H, d_kv=H // 4, d_ff=2 * H, num_layers=L, num_decoder_layers=L,
                       num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=P,
                       dropout_rate=0.0, use_cache=False, decoder_start_token_id=0, pad_token_id=0,
                       attn_implementation=attn)
        model = T5ForConditionalGeneration(cfg)
    model.eval()
    cls = type(model)
    if name == "t5":
        def forward(input_ids, decoder_input_ids):
            out = cls.forward(model, input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False,
                              return_dict=False)
            return (out[0],)
    else:
        def forward(input_ids):
            return (cls.forward(model, input_ids=input_ids, return_dict=False)[0],)
    model.forward = forward  # torch.jit.trace and eager calls both go through this closure
    return model


def sequences(g: torch.Generator, rows: int, length: int, tokens: int) -> torch.Tensor:
    start = torch.randint(0, tokens, (rows, 1), generator=g)
    stride = torch.randint(1, 4, (rows, 1), generator=g)
    return (start + stride * torch.arange(length).unsqueeze(0)) % tokens


def make_inputs(name: str, g: torch.Generator, rows: int, seq: int, V: int, seq_dec: int | None = None):
    """(inputs, targets) for `rows` sequences of `seq` tokens (T5's decoder: seq_dec, default seq)."""
    if name in ("gpt2", "llama"):
        s = sequences(g, rows, seq + 1, V)
        return [s[:, :-1].contiguous()], s[:, 1:].contiguous()
    if name == "bert":
        s = sequences(g, rows, seq, V - 1)  # token V-1 is [MASK]
        masked = torch.rand(rows, seq, generator=g) < 0.15
        return [s.masked_fill(masked, V - 1)], s
    seq_dec = seq if seq_dec is None else seq_dec
    s = sequences(g, rows, seq + seq_dec, V - 1) + 1  # 0 is pad and decoder start
    y = s[:, seq:].contiguous()
    dec = torch.cat([torch.zeros(rows, 1, dtype=torch.long), y[:, :-1]], dim=1)
    return [s[:, :seq].contiguous(), dec], y


def make_data(a, name: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(a.seed * 1000003 + 1)
    out = {}
    for k in range(a.steps):
        xs, y = make_inputs(name, g, a.batch, a.seq, vocab(a))
        for i, x in enumerate(xs):
            out[f"x{i}.{k}"] = x
        out[f"y.{k}"] = y
    return out


def step_inputs(data, k: int) -> list[torch.Tensor]:
    return [data[f"x{i}.{k}"] for i in range(2) if f"x{i}.{k}" in data]


def lm_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def shape_generic_mask(batch_size, cache_position, kv_length, kv_offset=0, mask_function=None,
                       attention_mask=None, dtype=torch.float32, **kwargs):
    """masking_utils' sdpa_mask/eager_mask for the no-cache, no-padding causal case, in traceable tensor ops."""
    import transformers.masking_utils as mu

    if mask_function is not mu.causal_mask_function or attention_mask is not None or not (
            isinstance(kv_offset, int) and kv_offset == 0):
        raise RuntimeError("hf_models: the traced causal mask covers only input_ids without a cache or padding")
    mask = (cache_position.unsqueeze(-1) >= cache_position.unsqueeze(0)).unsqueeze(0).unsqueeze(0)
    if kwargs.get("config") is not None and kwargs["config"]._attn_implementation == "eager":
        mask = (~mask).to(dtype) * torch.finfo(dtype).min  # 0 where attended (-0.0 above the diagonal's zeros)
    return mask


@contextlib.contextmanager
def trace_patches(stock_mask: bool):
    """transformers' trace obstacles worked around (see the module's doc), undone on exit."""
    import transformers.masking_utils as mu
    import transformers.models.bert.modeling_bert as mb

    saved = (mu.find_packed_sequence_indices, dict(mu.AttentionMaskInterface._global_mapping),
             mb._prepare_4d_attention_mask_for_sdpa)
    mu.find_packed_sequence_indices = lambda position_ids: None
    if not stock_mask:
        mu.AttentionMaskInterface._global_mapping["sdpa"] = shape_generic_mask
        mu.AttentionMaskInterface._global_mapping["eager"] = shape_generic_mask
        mb._prepare_4d_attention_mask_for_sdpa = lambda mask, dtype, tgt_len=None: None
    try:
        yield
    finally:
        mu.find_packed_sequence_indices = saved[0]
        mu.AttentionMaskInterface._global_mapping.clear()
        mu.AttentionMaskInterface._global_mapping.update(saved[1])
        mb._prepare_4d_attention_mask_for_sdpa = saved[2]


def trace(a, model, example: list[torch.Tensor]):
    """torch.jit.trace without the graph optimizer, before any training of the model."""
    with trace_patches(a.stock_mask), torch.jit.optimized_execution(False), torch.no_grad():
        return torch.jit.trace(model, tuple(example), check_trace=False)


def source_line(node) -> str:
    """The innermost transformers frame of the node's Python stack (else the innermost frame)."""
    frames = [line.strip() for line in node.sourceRange().splitlines() if ".py(" in line]
    ours = [f for f in frames if "transformers/" in f] or frames
    return ours[0].split("site-packages/")[-1].split(": ")[0] if ours else "?"


def tied_groups(loaded) -> list[list[str]]:
    groups: dict[tuple, list[str]] = {}
    for n, p in loaded.named_parameters(remove_duplicate=False):
        groups.setdefault((p.data_ptr(), tuple(p.shape), tuple(p.stride())), []).append(n)
    return [names for names in groups.values() if len(names) > 1]


def inspect_file(a, name: str, loaded) -> None:
    """Logs and checks (b) control flow, (c) ties, and the detach nodes of the loaded file."""
    g = loaded.inlined_graph
    blocks = [n.kind() for n in g.findAllNodes("prim::If") + g.findAllNodes("prim::Loop")]
    blocks += [n.kind() for n in g.nodes() if list(n.blocks()) and n.kind() not in ("prim::If", "prim::Loop")]
    kinds = {n.kind() for n in g.nodes()}
    log(f"{name}: inlined graph: {sum(1 for _ in g.nodes())} nodes, {len(kinds)} kinds, "
        f"nodes with blocks: {blocks or 'none'}")
    for n in g.findAllNodes("aten::detach"):
        log(f"{name}: aten::detach at {source_line(n)}")
    ties = tied_groups(loaded)
    log(f"{name}: ties after torch.jit.load: " + ("; ".join(" = ".join(t) for t in ties) or "none")
        + f" ({sum(1 for _ in loaded.parameters())} distinct parameters)")
    if blocks:
        fail(f"{name}: the inlined graph holds nodes with blocks: {blocks}")
    if sorted(map(sorted, ties)) != sorted(map(sorted, EXPECTED_TIES[name])):
        fail(f"{name}: expected the ties {EXPECTED_TIES[name]}")


def baked_sizes(loaded, rows: int, seq: int) -> list[str]:
    """Nodes taking a constant int list that holds the traced rows (first) or sequence length."""
    found = []
    for n in loaded.inlined_graph.nodes():
        for v in n.inputs():
            src = v.node()
            vals = None
            if src.kind() == "prim::ListConstruct":
                ins = [i.node() for i in src.inputs()]
                if ins and all(i.kind() == "prim::Constant" and i.output().type().kind() == "IntType" for i in ins):
                    vals = [i.output().toIValue() for i in ins]
            elif src.kind() == "prim::Constant" and str(v.type()) == "int[]":
                vals = list(v.toIValue())
            if vals and (seq in vals or vals[0] == rows):
                found.append(f"{n.kind()} {vals} at {source_line(n)}")
    return found


def max_diff(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want|, or inf when either holds a nan or an inf (no comparison may pass on those)."""
    if not (torch.isfinite(got).all() and torch.isfinite(want).all()):
        return float("inf")
    return (got - want).abs().max().item()


def rel_diff(got: float, want: float) -> float:
    """|got - want| / |want|, or inf when either is not a finite number."""
    if not (math.isfinite(got) and math.isfinite(want)):
        return float("inf")
    return abs(got - want) / max(abs(want), 1e-12)


def compare(a, name, model, loaded, xs, y, grads: bool) -> tuple[float, float]:
    """Largest |loaded - eager| of the logits and (with grads) of the parameter gradients."""
    if not grads:
        with torch.no_grad():
            got, want = loaded(*xs), model(*xs)
        if not isinstance(got, tuple) or len(got) != 1:
            raise RuntimeError(f"the file returns {type(got).__name__} of {len(got)}, not (logits,)")
        return max_diff(got[0], want[0]), 0.0
    model.zero_grad()
    want = model(*xs)[0]
    lm_loss(want, y).backward()
    wg = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for p in loaded.parameters():
        p.grad = None
    got = loaded(*xs)[0]
    lm_loss(got, y).backward()
    gerr = 0.0
    for n, p in loaded.named_parameters():
        if n in wg:
            gerr = max(gerr, max_diff(p.grad, wg[n]))
    for p in loaded.parameters():
        p.grad = None
    return max_diff(got, want), gerr


def check_dynamic(a, name: str, out: str) -> bool:
    model = make_model(a, name)
    V, mb = vocab(a), a.batch // a.microbatches
    g = torch.Generator().manual_seed(a.seed + 7)
    example, _ = make_inputs(name, g, mb, a.seq, V)
    path = os.path.join(out, f"{name}.pt")
    t0 = time.perf_counter()
    torch.jit.save(trace(a, model, example), path)
    loaded = torch.jit.load(path)
    log(f"{name}: traced at {[tuple(x.shape) for x in example]} in {time.perf_counter() - t0:.1f} s "
        f"(attention {model.config._attn_implementation}{', stock mask' if a.stock_mask else ''})")
    inspect_file(a, name, loaded)
    P = max_positions(a)
    shapes = [(mb, a.seq), (mb + 1, a.seq), (mb, a.seq - 4), (1, 7), (1, 1), (a.batch, a.seq), (3, a.seq + 4),
              (mb, P)]
    if name == "t5":
        shapes += [(mb, a.seq, a.seq - 3), (3, 5, a.seq + 2), (2, a.seq, 1)]
    ok = True
    for i, shape in enumerate(shapes):
        rows, seq = shape[:2]
        xs, y = make_inputs(name, g, rows, seq, V, shape[2] if len(shape) > 2 else None)
        desc = " ".join(str(list(x.shape)) for x in xs)
        try:
            err, gerr = compare(a, name, model, loaded, xs, y, grads=i in (1, 2, 5))
        except Exception as e:  # noqa: BLE001
            last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            log(f"{name}: dynamic: {desc}: ERROR {last}")
            ok = False
            continue
        good = err <= TOL and gerr <= TOL
        ok &= good
        log(f"{name}: dynamic: {desc}: max |file - eager| logits {err:.3g}"
            + (f", gradients {gerr:.3g}" if i in (1, 2, 5) else "") + ("" if good else "  <-- FAIL"))
    if not ok:
        for line in baked_sizes(loaded, mb, a.seq):
            log(f"{name}: traced size in a constant: {line}")
    log(f"{name}: dynamic shapes {'OK' if ok else 'FAIL'}")
    return ok


def train(forward, params, data, steps: int, lr: float) -> list[float]:
    """The unsplit reference: the whole batch per step."""
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    losses = []
    for k in range(steps):
        loss = lm_loss(forward(*step_inputs(data, k))[0], data[f"y.{k}"])
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def main() -> int:
    a = parse_args()
    if a.check_dynamic:
        names = MODELS if a.model == "all" else (a.model,)
        with contextlib.ExitStack() as stack:
            out = a.out or stack.enter_context(tempfile.TemporaryDirectory())
            os.makedirs(out, exist_ok=True)
            results = {n: check_dynamic(a, n, out) for n in names}
        log("check-dynamic: " + ", ".join(f"{n} {'OK' if r else 'FAIL'}" for n, r in results.items()))
        return 0 if all(results.values()) else 1

    name = a.model
    os.makedirs(a.out, exist_ok=True)
    model = make_model(a, name)
    data = make_data(a, name)
    mb = a.batch // a.microbatches
    path = os.path.join(a.out, "model.pt")
    t0 = time.perf_counter()
    torch.jit.save(trace(a, model, [x[:mb] for x in step_inputs(data, 0)]), path)
    log(f"{name}: traced and saved {path} in {time.perf_counter() - t0:.1f} s "
        f"(attention {model.config._attn_implementation})")
    torch.save(data, os.path.join(a.out, "data.pt"))
    xs0 = step_inputs(data, 0)
    with torch.no_grad():
        logits = model(*xs0)[0]
    torch.save({"logits": logits, "loss": lm_loss(logits, data["y.0"])}, os.path.join(a.out, "reference.pt"))

    loaded = torch.jit.load(path)
    inspect_file(a, name, loaded)
    for rows in sorted({mb, a.batch}):
        xs = [x[:rows] for x in xs0]
        err, _ = compare(a, name, model, loaded, xs, None, grads=False)
        log(f"{name}: file at {[list(x.shape) for x in xs]}: max |file - eager| = {err:.3g}")
        if err > TOL:
            fail(f"{name}: the traced file differs from the eager model")

    losses = train(model, list(model.parameters()), data, a.steps, a.lr)
    for k, loss in enumerate(losses):
        print(f"step {k} loss {loss:.9g}", flush=True)
    file_losses = train(loaded, list(loaded.parameters()), data, a.steps, a.lr)
    worst = max(rel_diff(f, e) for f, e in zip(file_losses, losses))
    log(f"{name}: the file trained the same way: losses {' '.join(f'{v:.9g}' for v in file_losses)} "
        f"(largest relative difference {worst:.3g})")
    if worst > TOL:
        fail(f"{name}: training the traced file differs from the eager model")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The GPT-style example of examples/models/gpt.cpp, rebuilt in PyTorch, trained with
torch.distributed.pipelining (PyTorch >= 2.4; measured with 2.11+cu130) on the same sizes, schedule, stage
split (gpt_manual_split: stage i > 0 starts at block i * n_layer / S; the tied LM head is a copy of the
token embedding on the last stage, as pippy-cpp replicates it) and micro-batches as bench/gpu_bench.cpp.
Prints one JSON object with the same fields as gpu_bench. One process (all stages on one GPU, multi-stage
schedules) or under torchrun (one stage group per rank, NCCL).

  python3 bench/gpu_pipelining.py --schedule interleaved-1f1b --stages-per-rank 4 --microbatches 8 ...
"""
import argparse, json, math, os, socket, time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--schedule", default="interleaved-1f1b")
p.add_argument("--stages-per-rank", type=int, default=4)
p.add_argument("--microbatches", type=int, default=8)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--n-layer", type=int, default=8)
p.add_argument("--n-embd", type=int, default=512)
p.add_argument("--n-head", type=int, default=8)
p.add_argument("--vocab", type=int, default=8192)
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--tf32", action="store_true")
a = p.parse_args()
torch.backends.cuda.matmul.allow_tf32 = a.tf32
torch.backends.cudnn.allow_tf32 = a.tf32


class Attention(nn.Module):
    def __init__(s):
        super().__init__()
        s.c_attn, s.c_proj = nn.Linear(a.n_embd, 3 * a.n_embd), nn.Linear(a.n_embd, a.n_embd)

    def forward(s, x):
        B, T, C = x.shape
        hs = C // a.n_head
        q, k, v = (t.view(B, T, a.n_head, hs).transpose(1, 2) for t in s.c_attn(x).split(C, 2))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril().logical_not()
        att = torch.softmax(att.masked_fill(mask, float("-inf")), -1)
        return s.c_proj((att @ v).transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.ln_1, s.ln_2, s.attn = nn.LayerNorm(a.n_embd), nn.LayerNorm(a.n_embd), Attention()
        s.fc, s.proj = nn.Linear(a.n_embd, 4 * a.n_embd), nn.Linear(4 * a.n_embd, a.n_embd)

    def forward(s, x):
        x = x + s.attn(s.ln_1(x))
        return x + s.proj(F.gelu(s.fc(s.ln_2(x))))


class Stage(nn.Module):
    """Blocks [lo, hi); the first stage adds the embeddings, the last ln_f and the (copied) tied head."""

    def __init__(s, lo, hi, first, last, tok_weight):
        super().__init__()
        s.first, s.last = first, last
        if first:
            s.tok_emb, s.pos_emb = nn.Embedding(a.vocab, a.n_embd), nn.Embedding(a.seq, a.n_embd)
            s.tok_emb.weight = nn.Parameter(tok_weight.clone())
        s.blocks = nn.ModuleList(Block() for _ in range(lo, hi))
        if last:
            s.ln_f = nn.LayerNorm(a.n_embd)
            s.head_weight = nn.Parameter(tok_weight.clone())

    def forward(s, x):
        if s.first:
            x = s.tok_emb(x) + s.pos_emb(torch.arange(x.size(1), device=x.device))
        for b in s.blocks:
            x = b(x)
        return F.linear(s.ln_f(x), s.head_weight) if s.last else x


def lm_loss(logits, y):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


world = int(os.environ.get("WORLD_SIZE", "1"))
rank = int(os.environ.get("RANK", "0"))
local = int(os.environ.get("LOCAL_RANK", "0"))
if world == 1 and "MASTER_PORT" not in os.environ:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); os.environ["MASTER_PORT"] = str(s.getsockname()[1]); s.close()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
dev = torch.device("cuda", local % torch.cuda.device_count())
torch.cuda.set_device(dev)
dist.init_process_group("nccl", rank=rank, world_size=world, device_id=dev)

from torch.distributed import pipelining as pp  # noqa: E402

names = {
    "gpipe": pp.ScheduleGPipe, "1f1b": pp.Schedule1F1B, "interleaved-1f1b": pp.ScheduleInterleaved1F1B,
    "looped-bfs": pp.ScheduleLoopedBFS, "interleaved-zb": pp.ScheduleInterleavedZeroBubble,
    "zbv": pp.ScheduleZBVZeroBubble,
}
V = a.stages_per_rank if a.schedule not in ("gpipe", "1f1b") else 1
S = world * V
torch.manual_seed(a.seed)
tok = torch.randn(a.vocab, a.n_embd)  # initial values differ from the C++ model's; speed does not care
bounds = [0] + [i * a.n_layer // S for i in range(1, S)] + [a.n_layer]
# Stage ids of this rank: loop placement (stage = v * world + rank), V-shaped for zbv.
if a.schedule == "zbv":
    mine = [rank, 2 * world - 1 - rank]
else:
    mine = [v * world + rank for v in range(V)]
stages, params = [], []
for sid in mine:
    mod = Stage(bounds[sid], bounds[sid + 1], sid == 0, sid == S - 1, tok).to(dev)
    params += list(mod.parameters())
    stages.append(pp.PipelineStage(mod, sid, S, dev))
opt = torch.optim.SGD(params, lr=a.lr)
cls = names[a.schedule]
sched = cls(stages[0] if cls in (pp.ScheduleGPipe, pp.Schedule1F1B) else stages, n_microbatches=a.microbatches,
            loss_fn=lm_loss)
torch.manual_seed(a.seed + 1)
idx = torch.randint(a.vocab, (a.batch, a.seq), device=dev)
tgt = torch.randint(a.vocab, (a.batch, a.seq), device=dev)
has_first = any(sid == 0 for sid in mine)
has_last = any(sid == S - 1 for sid in mine)


def step():
    opt.zero_grad()
    losses = []
    args = (idx,) if has_first else ()
    kw = {"target": tgt, "losses": losses} if has_last else {}
    sched.step(*args, **kw)
    opt.step()
    return float(torch.stack(losses).mean()) if losses else None


for _ in range(a.warmup):
    step()
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats(dev)
t0 = time.perf_counter()
for _ in range(a.steps):
    loss = step()
torch.cuda.synchronize()
secs = time.perf_counter() - t0
if has_last:
    print(json.dumps({"impl": "torch.distributed.pipelining", "schedule": a.schedule, "ranks": world, "stages": S,
                      "microbatches": a.microbatches, "batch": a.batch, "seq": a.seq, "n_layer": a.n_layer,
                      "n_embd": a.n_embd, "steps": a.steps, "step_ms": 1000 * secs / a.steps,
                      "tokens_per_s": a.batch * a.seq * a.steps / secs, "last_loss": loss,
                      "peak_allocated_mb": torch.cuda.max_memory_allocated(dev) / 1e6,
                      "torch": torch.__version__}), flush=True)
dist.destroy_process_group()

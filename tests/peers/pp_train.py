#!/usr/bin/env python3
"""Train one of our example models (mynetwork, gpt) with torch.distributed.pipelining, as a peer to compare with.

The C++ example exports the unsplit model's initial parameters, the batches and the run's settings; this
runner rebuilds the same model in Python, splits it by hand into the same stages (the way torchtitan builds
stages: one nn.Module per stage, no tracing), runs torch's schedule on N Gloo processes on the CPU, and
prints the same `step K loss X` lines as our examples. A test then compares the losses and the final
parameters (--out) of both systems.

    python pp_train.py --export DIR --nproc N --schedule NAME [--out OUT.pt] [--time] [--timeout S]

--nproc 1 trains the unsplit model without pipelining (the reference of our Python model).

Files read from DIR:
    init.pt       {parameter name: float32 tensor} of the unsplit model (torch.save or C++ torch::pickle_save)
    batches.pt    {"x.0": tensor, "y.0": tensor, "x.1": ...}, one whole batch per step
    config.json   model, batch, microbatches, steps, lr, momentum, schedule, num_stages, stages_per_rank,
                  the model's sizes, and the split (mynetwork: stage_boundaries; gpt: stage_first_blocks)
Written:
    stdout        `step K loss X` per step (X = mean of the micro-batch losses, %.9g), then `step_ms X` with --time
    OUT.pt        {parameter name: final tensor} over all stages; the tied gpt weight once, as tok_emb.weight

Exit status: 0 success, 1 a rank failed (its error is printed), 2 bad input, 124 timed out (stacks printed).
"""
from __future__ import annotations

import argparse
import datetime
import faulthandler
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import OrderedDict

if "--worker" in sys.argv[1:]:
    # First thing in a rank, before torch's slow import: the launcher sends SIGUSR1 for the stacks of a rank
    # that hangs, before killing it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)

warnings.filterwarnings("ignore", message=".*NumPy.*")  # the wheel warns when numpy is missing

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.distributed import pipelining as pp  # noqa: E402

# Our schedule names -> torch's schedule class names, and how stages are placed on ranks.
SCHEDULES = {
    "gpipe": ("ScheduleGPipe", "single"),
    "1f1b": ("Schedule1F1B", "single"),
    "interleaved-1f1b": ("ScheduleInterleaved1F1B", "looped"),
    "looped-bfs": ("ScheduleLoopedBFS", "looped"),
    "interleaved-zb": ("ScheduleInterleavedZeroBubble", "looped"),
    "zbv": ("ScheduleZBVZeroBubble", "v"),
    "dualpipev": ("ScheduleDualPipeV", "v"),
}

TIED_HEAD = "lm_head.weight"  # the gpt head's name for the token embedding (tok_emb.weight)


class InputError(Exception):
    pass


def log(msg: str) -> None:
    sys.stderr.write(f"pp_train: {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------------------
# The export


def load_pt(path: str):
    """torch.load for files from torch.save and from C++ torch::pickle_save (whose dicts carry a type tag)."""
    safe = []
    try:
        import torch.jit._pickle as jit_pickle

        safe.append(jit_pickle.restore_type_tag)
    except Exception:  # pragma: no cover - older/newer torch without it
        pass
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return torch.load(path, map_location="cpu", weights_only=False)


class Export:
    def __init__(self, d: str):
        for f in ("config.json", "init.pt", "batches.pt"):
            if not os.path.isfile(os.path.join(d, f)):
                raise InputError(f"{d}: no {f}")
        with open(os.path.join(d, "config.json")) as f:
            self.cfg = json.load(f)
        self.init = {str(k): v for k, v in load_pt(os.path.join(d, "init.pt")).items()}
        self.batches = {str(k): v for k, v in load_pt(os.path.join(d, "batches.pt")).items()}
        c = self.cfg
        self.model = c.get("model")
        if self.model not in ("mynetwork", "gpt"):
            raise InputError(f"config.json: model must be mynetwork or gpt, got {self.model!r}")
        self.batch = int(c["batch"])
        self.microbatches = int(c["microbatches"])
        self.steps = int(c["steps"])
        self.lr = float(c["lr"])
        self.momentum = float(c.get("momentum", 0.9))
        if self.batch % self.microbatches != 0:
            raise InputError(f"batch {self.batch} is not a multiple of microbatches {self.microbatches}")
        for k in range(self.steps):
            for p in ("x", "y"):
                if f"{p}.{k}" not in self.batches:
                    raise InputError(f"batches.pt has no {p}.{k} (steps = {self.steps})")
        if self.model == "gpt" and "tok_emb.weight" not in self.init:
            if TIED_HEAD not in self.init:
                raise InputError("init.pt has neither tok_emb.weight nor lm_head.weight")
            self.init["tok_emb.weight"] = self.init[TIED_HEAD]
        if self.model == "gpt" and TIED_HEAD in self.init:
            if not torch.equal(self.init[TIED_HEAD], self.init["tok_emb.weight"]):
                raise InputError("init.pt: lm_head.weight differs from tok_emb.weight (they are tied)")

    def batch_at(self, k: int):
        return self.batches[f"x.{k}"], self.batches[f"y.{k}"]

    def output_names(self):
        """The parameter names OUT.pt holds: init.pt's, the tied head once (as tok_emb.weight)."""
        return sorted(n for n in self.init if n != TIED_HEAD)


# ---------------------------------------------------------------------------------------------------------
# The models (same modules, names and arithmetic as runtime/src/reference_models.cpp and examples/models/gpt.cpp)


def mynetwork_children(cfg) -> list[tuple[str, nn.Module]]:
    children = []
    prev = int(cfg["in_dim"])
    for i, d in enumerate(cfg["dims"]):
        children.append((f"layer{i}_lin", nn.Linear(prev, int(d))))
        children.append((f"layer{i}_relu", nn.ReLU()))
        prev = int(d)
    children.append(("output_proj", nn.Linear(prev, int(cfg["classes"]))))
    return children


def even_boundaries(n: int, s: int) -> list[int]:
    if s < 1 or s > n:
        raise InputError(f"cannot split {n} modules into {s} stages")
    return [i * n // s for i in range(1, s)]


def configured_split(cfg, keys, num_stages: int):
    """The export's split (config.json) if it is for num_stages stages, else None (then the runner derives the
    same split as our C++). --nproc 1 on a pipelined export ignores it."""
    if num_stages == 1 or int(cfg.get("num_stages") or num_stages) != num_stages:
        return None
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return None


def mynetwork_boundaries(cfg, num_stages: int) -> list[int]:
    n = 2 * len(cfg["dims"]) + 1
    b = configured_split(cfg, ["stage_boundaries"], num_stages)
    if b is None:
        b = [2, 4] if num_stages == 3 and len(cfg["dims"]) >= 2 else even_boundaries(n, num_stages)
    b = [int(v) for v in b]
    if len(b) == num_stages and b and b[0] == 0:
        b = b[1:]
    if len(b) != num_stages - 1 or any(e <= a for a, e in zip([0] + b, b + [n])):
        raise InputError(f"stage_boundaries {b} do not cut {n} modules into {num_stages} non-empty stages")
    return b


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = nn.Linear(c["n_embd"], 3 * c["n_embd"])
        self.c_proj = nn.Linear(c["n_embd"], c["n_embd"])
        self.n_head = c["n_head"]

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in self.c_attn(x).split(C, 2))
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril().logical_not()
        att = torch.softmax(att.masked_fill(mask, float("-inf")), -1)
        y = torch.matmul(att, v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c["n_embd"])
        self.ln_2 = nn.LayerNorm(c["n_embd"])
        self.attn = CausalSelfAttention(c)
        self.fc = nn.Linear(c["n_embd"], 4 * c["n_embd"])
        self.proj = nn.Linear(4 * c["n_embd"], c["n_embd"])

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class GPTPart(nn.Module):
    """Blocks [first_block, end_block) of the GPT, with the embeddings when `first` and ln_f + the head when
    `last`. Both: the whole model, the head sharing tok_emb's Parameter (tied, as in gpt.cpp)."""

    def __init__(self, c, first: bool, last: bool, first_block: int, end_block: int):
        super().__init__()
        self.first, self.last = first, last
        if first:
            self.tok_emb = nn.Embedding(c["vocab_size"], c["n_embd"])
            self.pos_emb = nn.Embedding(c["block_size"], c["n_embd"])
        self.blocks = nn.ModuleDict({str(i): Block(c) for i in range(first_block, end_block)})
        if last:
            self.ln_f = nn.LayerNorm(c["n_embd"])
            self.lm_head = nn.Module()
            if first:
                self.lm_head.weight = self.tok_emb.weight  # tied: one Parameter
            else:
                self.lm_head.weight = nn.Parameter(torch.empty(c["vocab_size"], c["n_embd"]))  # a copy

    def forward(self, x):
        if self.first:
            T = x.size(1)
            x = self.tok_emb(x) + self.pos_emb(torch.arange(T, dtype=torch.long, device=x.device))
        for b in self.blocks.values():
            x = b(x)
        if self.last:
            x = F.linear(self.ln_f(x), self.lm_head.weight)
        return x


def gpt_config(cfg):
    return {k: int(cfg[k]) for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")}


def gpt_first_blocks(cfg, num_stages: int) -> list[int]:
    """Block index where each stage begins (length num_stages, starting with 0)."""
    n = int(cfg["n_layer"])
    if num_stages < 1 or num_stages > n:
        raise InputError(f"gpt: cannot split {n} blocks into {num_stages} stages (1..{n})")
    b = configured_split(cfg, ["stage_first_blocks", "stage_boundaries"], num_stages)
    if b is None:
        b = [i * n // num_stages for i in range(1, num_stages)]
    b = [int(v) for v in b]
    if len(b) == num_stages - 1 and (not b or b[0] != 0):
        b = [0] + b
    if len(b) != num_stages or b[0] != 0 or any(e <= a for a, e in zip(b, b[1:] + [n])):
        raise InputError(f"stage_first_blocks {b} do not cut {n} blocks into {num_stages} non-empty stages")
    return b


def build_part(ex: Export, stage: int, num_stages: int) -> nn.Module:
    """Stage `stage` of `num_stages` as an nn.Module whose parameter names are the unsplit model's."""
    c = ex.cfg
    if ex.model == "mynetwork":
        children = mynetwork_children(c)
        b = [0] + (mynetwork_boundaries(c, num_stages) if num_stages > 1 else []) + [len(children)]
        return nn.Sequential(OrderedDict(children[b[stage]:b[stage + 1]]))
    g = gpt_config(c)
    fb = gpt_first_blocks(c, num_stages) + [g["n_layer"]]
    return GPTPart(g, stage == 0, stage == num_stages - 1, fb[stage], fb[stage + 1])


def load_params(module: nn.Module, init: dict) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters(remove_duplicate=False):
            src = init.get(name)
            if src is None and name == TIED_HEAD:
                src = init.get("tok_emb.weight")
            if src is None:
                raise InputError(f"init.pt has no {name}")
            if tuple(src.shape) != tuple(p.shape):
                raise InputError(f"init.pt: {name} has shape {tuple(src.shape)}, the model's is {tuple(p.shape)}")
            p.copy_(src.to(p.dtype))


def loss_fn_for(model: str):
    if model == "mynetwork":
        return lambda out, y: F.cross_entropy(out, y)
    return lambda out, y: F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1))


def final_params(modules) -> dict:
    """{name: final tensor} of these stage modules; the gpt head's copy of the tied weight as lm_head.weight
    (finish() checks that it still equals tok_emb.weight and drops it)."""
    out = {}
    for m in modules:
        for name, p in m.named_parameters(remove_duplicate=False):
            out[name] = p.detach().clone().contiguous()
    return out


def print_loss(k: int, loss: float) -> None:
    sys.stdout.write(f"step {k} loss {loss:.9g}\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------------
# Stage placement


def plan(ex: Export, schedule: str, nproc: int, stages_per_rank: int = 0):
    """(torch schedule class name, number of stages, stages_of(rank) -> this rank's stage indices).

    Stages per rank: --stages-per-rank, else config.json's stages_per_rank when the export was made for this
    schedule, else the schedule's default (1 for gpipe/1f1b, 2 for the others). Placement: looped, stage s on
    rank s % N; V-shaped (zbv, dualpipev), rank r holds stages r and 2N-1-r."""
    if schedule not in SCHEDULES:
        raise InputError(f"schedule {schedule!r} has no torch counterpart (known: {', '.join(SCHEDULES)})")
    cls, style = SCHEDULES[schedule]
    v = stages_per_rank or (int(ex.cfg.get("stages_per_rank") or 0) if ex.cfg.get("schedule") == schedule else 0)
    v = v or (1 if style == "single" else 2)
    if style == "single" and v != 1:
        raise InputError(f"{schedule} runs one stage per rank, not {v}")
    if style == "v" and v != 2:
        raise InputError(f"{schedule} runs two stages per rank, not {v}")
    s = nproc * v
    if style == "v":
        def stages_of(r):
            return [r, 2 * nproc - 1 - r]
    else:
        def stages_of(r):
            return list(range(r, s, nproc))
    return cls, s, stages_of


# ---------------------------------------------------------------------------------------------------------
# One process (rank) of the pipelined run


class GlooPipelineStage(pp.PipelineStage):
    """torch's PipelineStage minus the messages to itself in its first step's connection warm-up.

    Before the first step every stage exchanges a dummy tensor with the ranks of its neighbour stages. In the
    V-shaped placement (zbv, dualpipev) stages N-1 and N live on the same rank, so that rank sends to and
    receives from itself, which Gloo refuses ("Pair is not connected"); NCCL allows it. The schedules hand
    activations between two stages of one rank locally, so dropping only these self-addressed warm-up
    messages changes nothing else. --raw-torch runs torch's PipelineStage as it is."""

    def _get_init_p2p_neighbors_ops(self):
        return [op for op in super()._get_init_p2p_neighbors_ops() if op.group_peer != self.group_rank]


def cpu_share(allowed, r, n):
    """The CPUs of rank r of n as `pippy run --bind-cores` gives them: an even share of `allowed`, or one
    CPU each (round robin) when the ranks outnumber them. The rule is core's cpu_share (core/src/topology.cpp,
    pinned by tests/core/test_topology.cpp); this peer runs without our libraries, so it is restated here."""
    cpus = sorted(allowed)
    k = len(cpus)
    if k == 0:
        return set(allowed)
    if n >= k:
        return {cpus[r % k]}
    return set(cpus[r * k // n:(r + 1) * k // n])


def worker(args) -> int:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if args.bind_cores:
        os.sched_setaffinity(0, cpu_share(os.sched_getaffinity(0), rank, world))
    torch.set_num_threads(1)
    ex = Export(args.export)
    cls_name, S, stages_of = plan(ex, args.schedule, world, args.stages_per_rank)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=args.pg_timeout))
    mine = stages_of(rank)
    rank_of = {s: r for r in range(world) for s in stages_of(r)}
    parts = {}
    for s in mine:
        parts[s] = build_part(ex, s, S)
        load_params(parts[s], ex.init)
    stage_cls = pp.PipelineStage if args.raw_torch else GlooPipelineStage
    stages = [stage_cls(parts[s], s, S, torch.device("cpu")) for s in mine]
    cls = getattr(pp.schedules, cls_name)
    loss_fn = loss_fn_for(ex.model)
    if len(stages) == 1 and SCHEDULES[args.schedule][1] == "single":
        sched = cls(stages[0], ex.microbatches, loss_fn=loss_fn)
    else:
        sched = cls(stages, ex.microbatches, loss_fn=loss_fn)
    # One optimizer over this rank's stages (SGD is per-element, so per stage or per rank is the same);
    # the stages never share a Parameter: the tied gpt weight has a copy in the first and the last stage.
    opt = torch.optim.SGD([p for s in mine for p in parts[s].parameters()], lr=ex.lr, momentum=ex.momentum)

    # The tied weight: sum the two copies' gradients before the optimizer step.
    tie_group = None
    tie_local = None
    if ex.model == "gpt":
        r0, r1 = rank_of[0], rank_of[S - 1]
        if r0 == r1:
            if rank == r0:
                tie_local = (parts[0].tok_emb.weight, parts[S - 1].lm_head.weight)
        else:
            g = dist.new_group([r0, r1])  # every rank takes part in new_group
            if rank == r0:
                tie_group, tie_param = g, parts[0].tok_emb.weight
            elif rank == r1:
                tie_group, tie_param = g, parts[S - 1].lm_head.weight

    first, last = 0 in mine, (S - 1) in mine
    times = []
    actions = []  # --trace: (name, start_us, end_us) of the last step's actions, from the step's start
    for k in range(ex.steps):
        x, y = ex.batch_at(k)
        dist.barrier()
        profile = (args.trace or args.profiler_dir) and k == ex.steps - 1
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if profile else None
        if prof:
            prof.__enter__()
        t0 = time.perf_counter()
        losses = []
        call_args = (x,) if first else ()
        call_kw = {"target": y, "losses": losses} if last else {}
        with torch.profiler.record_function("pp_train:step"):
            sched.step(*call_args, return_outputs=False, **call_kw)
        if tie_local is not None:
            a, b = tie_local
            g = a.grad + b.grad
            a.grad.copy_(g)
            b.grad.copy_(g)
        elif tie_group is not None:
            dist.all_reduce(tie_param.grad, group=tie_group)
        with torch.profiler.record_function(f"PP:{mine[0]}U"):
            opt.step()
            opt.zero_grad()
        times.append(time.perf_counter() - t0)
        if prof:
            prof.__exit__(None, None, None)
            actions = profiled_actions(prof, mine)
            if args.profiler_dir:  # torch.profiler's own file, as a user of torch.pp would write it
                prof.export_chrome_trace(os.path.join(args.profiler_dir, f"rank{rank}.json"))
        if last:
            if len(losses) != ex.microbatches:
                raise RuntimeError(f"the schedule returned {len(losses)} losses for {ex.microbatches} micro-batches")
            print_loss(k, sum(float(l) for l in losses) / len(losses))
    torch.save({"params": final_params(parts[s] for s in mine), "times": times, "actions": actions},
               os.path.join(args.result_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
    return 0


OUR_ACTION = re.compile(r"^\d+((F|B|I|W|SEND_F|RECV_F|SEND_B|RECV_B)\d+|U)$")


def profiled_actions(prof, mine) -> list:
    """The actions torch.pp's schedules mark for the profiler ("PP:0F3" in the multi-stage runtime; "Forward
    i" / "Backward i" in GPipe; Schedule1F1B marks none) as (our action name, start, end) in us from the
    step's start. The optimizer step of the rank's first stage is marked "PP:<stage>U" here."""
    evs = prof.events()
    start = min(e.time_range.start for e in evs if e.name == "pp_train:step")
    out = []
    for e in evs:
        name = e.name
        if name.startswith("PP:"):
            name = name[3:]
        elif name.startswith("Forward ") or name.startswith("Backward "):
            kind, i = name.split()
            name = f"{mine[0]}{kind[0]}{i}"
        else:
            continue
        if not OUR_ACTION.match(name):
            continue  # UNSHARD, RESHARD, REDUCE_GRAD: no-ops here, and not actions of ours
        out.append((name, e.time_range.start - start, e.time_range.end - start))
    return out


def worker_main(args) -> int:
    try:
        return worker(args)
    except InputError as e:
        log(f"rank {os.environ.get('RANK')}: {e}")
        return 2
    except BaseException:
        sys.stderr.write(f"pp_train: rank {os.environ.get('RANK')} failed:\n{traceback.format_exc()}")
        sys.stderr.flush()
        return 1


# ---------------------------------------------------------------------------------------------------------
# The unsplit reference (--nproc 1)


def run_unsplit(args, ex: Export) -> int:
    torch.set_num_threads(1)
    model = build_part(ex, 0, 1)
    load_params(model, ex.init)
    opt = torch.optim.SGD(model.parameters(), lr=ex.lr, momentum=ex.momentum)  # the tied weight once
    loss_fn = loss_fn_for(ex.model)
    times = []
    for k in range(ex.steps):
        x, y = ex.batch_at(k)
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
        print_loss(k, loss.item())
    finish(args, ex, final_params([model]), [times])
    return 0


def finish(args, ex: Export, params: dict, times_per_rank) -> None:
    head = params.pop(TIED_HEAD, None)
    if head is not None and "tok_emb.weight" in params and not torch.equal(head, params["tok_emb.weight"]):
        diff = (head - params["tok_emb.weight"]).abs().max().item()
        raise RuntimeError(f"the tied weight's copies differ at the end (max |diff| {diff:.3g})")
    want = ex.output_names()
    if sorted(params) != want:
        missing = sorted(set(want) - set(params))
        extra = sorted(set(params) - set(want))
        raise InputError(f"final parameters do not match init.pt: missing {missing}, extra {extra}")
    if args.out:
        torch.save({n: params[n] for n in want}, args.out)
    if args.time:
        # A step lasts until its slowest rank is done: per step, the maximum over the ranks.
        per_step = [max(ts) for ts in zip(*times_per_rank)]
        tail = per_step[1:] or per_step
        sys.stdout.write(f"step_ms {statistics.median(tail) * 1e3:.3f}\n")
        sys.stdout.flush()


# ---------------------------------------------------------------------------------------------------------
# The launcher (--nproc N > 1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: str, limit: int = 20000) -> str:
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    return text if len(text) <= limit else "...\n" + text[-limit:]


def run_pipelined(args, ex: Export) -> int:
    _, S, _ = plan(ex, args.schedule, args.nproc, args.stages_per_rank)  # bad input fails here, before any process
    build_part(ex, 0, S)                                                    # starts
    cs = int(ex.cfg.get("num_stages") or S)
    if cs != S:
        log(f"note: the export is for {cs} stages, this run has {S}: its split is derived here, not read")
    with tempfile.TemporaryDirectory(prefix="pp_train.") as tmp:
        env = dict(os.environ)
        env.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(args.nproc),
                    "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
        if "GLOO_SOCKET_IFNAME" not in env and os.path.isdir("/sys/class/net/lo"):
            env["GLOO_SOCKET_IFNAME"] = "lo"
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--export", args.export, "--nproc",
               str(args.nproc), "--schedule", args.schedule, "--result-dir", tmp, "--pg-timeout", str(args.pg_timeout),
               "--stages-per-rank", str(args.stages_per_rank)]
        if args.raw_torch:
            cmd.append("--raw-torch")
        if args.bind_cores:
            cmd.append("--bind-cores")
        if args.trace:
            cmd += ["--trace", args.trace]  # the ranks profile their last step; the parent writes the file
        if args.profiler_dir:
            cmd += ["--profiler-dir", args.profiler_dir]
        procs, errs = [], []
        t_start = time.monotonic()
        try:
            return _launch_and_wait(args, ex, tmp, cmd, env, procs, errs, t_start)
        finally:
            for p in procs:  # the parent was interrupted or failed: take our ranks down with it
                if p.poll() is None:
                    p.kill()
                    p.wait()


def _launch_and_wait(args, ex, tmp, cmd, env, procs, errs, t_start) -> int:
    for r in range(args.nproc):
        err_path = os.path.join(tmp, f"rank{r}.err")
        errs.append(err_path)
        with open(err_path, "w") as ef:
            procs.append(subprocess.Popen(cmd, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                                          stdout=None, stderr=ef))
    deadline = t_start + args.timeout
    failed_at = None
    timed_out = False
    while any(p.poll() is None for p in procs):
        now = time.monotonic()
        if failed_at is None and any(p.returncode not in (None, 0) for p in procs):
            failed_at = now  # give the others a moment to report their own error, then stop them
        if now > deadline or (failed_at is not None and now > failed_at + 10):
            timed_out = failed_at is None
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGUSR1)  # faulthandler: where it is stuck
            time.sleep(1.0)
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for p in procs:
                p.wait()
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t_start
    codes = [p.returncode for p in procs]
    if timed_out or any(c != 0 for c in codes):
        what = f"schedule {args.schedule}, nproc {args.nproc}, model {ex.model}"
        if timed_out:
            log(f"TIMEOUT: the run did not finish within {args.timeout:g} s ({what}); "
                f"ranks killed, exit codes {codes}. Each rank's stderr (stacks at the kill) follows.")
        else:
            log(f"FAILED after {elapsed:.1f} s ({what}): exit codes {codes}. Each rank's stderr follows.")
        shown = {}
        for r, e in enumerate(errs):
            text = tail(e)
            if not text.strip():
                continue
            key = text.replace(f"rank {r} ", "rank R ")
            if key in shown:
                sys.stderr.write(f"----- rank {r} stderr: the same as rank {shown[key]}'s -----\n")
                continue
            shown[key] = r
            sys.stderr.write(f"----- rank {r} stderr -----\n{text}")
            if not text.endswith("\n"):
                sys.stderr.write("\n")
        sys.stderr.flush()
        if timed_out:
            return 124
        return 2 if all(c in (0, 2, -9, None) for c in codes) and 2 in codes else 1
    if args.verbose:
        for r, e in enumerate(errs):
            text = tail(e)
            if text.strip():
                sys.stderr.write(f"----- rank {r} stderr -----\n{text}")
    params, times, events = {}, [], []
    for r in range(args.nproc):
        res = torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True)
        events += [{"name": n, "ph": "X", "pid": r, "tid": 0, "ts": b, "dur": e - b} for n, b, e in res["actions"]]
        for n, t in res["params"].items():
            if n in params:
                raise InputError(f"{n} is on two ranks")
            params[n] = t
        times.append(res["times"])
    finish(args, ex, params, times)
    if args.trace:  # the last step in our Chrome layout (pid = rank): pippy trace summary / pippy-view read it
        with open(args.trace, "w") as f:
            json.dump({"traceEvents": events, "otherData": {"run": f"torch.pp {args.schedule} (last step)"}}, f)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", required=True, help="directory with init.pt, batches.pt, config.json")
    ap.add_argument("--nproc", type=int, default=None, help="processes (1 = unsplit, no pipelining)")
    ap.add_argument("--schedule", default=None, help="our schedule name (default: config.json's)")
    ap.add_argument("--stages-per-rank", type=int, default=0,
                    help="0 = config.json's (for its schedule) or the schedule's default")
    ap.add_argument("--out", default=None, help="write the final parameters here")
    ap.add_argument("--time", action="store_true", help="print step_ms, the median step time after the first")
    ap.add_argument("--trace", default=None, help="write the last step's actions as a Chrome trace (profiled)")
    ap.add_argument("--profiler-dir", default=None,
                    help="each rank writes torch.profiler's Chrome trace of the last step here (rankR.json)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a hung run is killed")
    ap.add_argument("--pg-timeout", type=float, default=None, help="Gloo timeout per operation (default 3/4 timeout)")
    ap.add_argument("--raw-torch", action="store_true",
                    help="use torch's PipelineStage as is (no Gloo self-send fix for zbv/dualpipev)")
    ap.add_argument("--verbose", action="store_true", help="also show the ranks' stderr on success")
    ap.add_argument("--bind-cores", action="store_true",
                    help="each rank on its own share of this process's CPUs, as `pippy run --bind-cores` binds ours")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pg_timeout is None:
        args.pg_timeout = max(5.0, 0.75 * args.timeout)
    if args.worker:
        rc = worker_main(args)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)  # skip the interpreter's teardown (seconds with torch loaded); the rank's work is saved
    try:
        ex = Export(args.export)
        if args.schedule is None:
            args.schedule = ex.cfg.get("schedule")
        if args.nproc is None:
            raise InputError("--nproc is required")
        if args.nproc == 1:
            return run_unsplit(args, ex)
        if args.nproc < 1:
            raise InputError("--nproc must be >= 1")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a launcher killed by a test stops its ranks
        if args.schedule is None:
            raise InputError("--schedule is required (config.json has none)")
        return run_pipelined(args, ex)
    except InputError as e:
        log(str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())

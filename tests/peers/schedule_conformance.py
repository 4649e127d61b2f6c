#!/usr/bin/env python3
"""Schedule conformance: pippy's schedule generators against torch.distributed.pipelining.

Usage: schedule_conformance.py PIPPY_BINARY [--quick] [--artifacts DIR]

For every case (schedule, ranks R, micro-batches M, stages per rank V) this script
  1. asks `pippy schedule --format csv` for our compute-only order and builds PyTorch's plan for the
     same shape with no process group (a stand-in stage object that only carries the sizes, as
     PyTorch's own schedule tests do), then compares, rank by rank, the order of the compute actions;
  2. lowers the compute order with PyTorch's `_add_send_recv` helper and compares the SEND/RECV
     actions with ours from `--lowered` (see `compare_comms` for exactly what is compared and why);
  3. checks that both sides reject the same shapes.
It also looks for schedule CSV files shipped inside the torch package (and, with --artifacts DIR,
compares the compute-only ones found there, e.g. a checkout's test/distributed/pipelining/artifacts).

It prints one table row per case and ends with "N passed, N failed"; the exit status is 1 if any
case failed, 2 on bad arguments, 77 (skip) when torch cannot be imported. Needs torch (written against
2.11); no GPU, no process group.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import time

# Our schedule names -> PyTorch's schedule classes (torch.distributed.pipelining.schedules).
TORCH_CLASS = {
    "gpipe": "ScheduleGPipe",
    "1f1b": "Schedule1F1B",
    "interleaved-1f1b": "ScheduleInterleaved1F1B",
    "looped-bfs": "ScheduleLoopedBFS",
    "interleaved-zb": "ScheduleInterleavedZeroBubble",
    "zbv": "ScheduleZBVZeroBubble",
    "dualpipev": "ScheduleDualPipeV",
    # ZB-H1 is documented (core/src/generators.cpp) as PyTorch's ZB1P on one stage per rank.
    "zb-h1": "ScheduleInterleavedZeroBubble",
}
V_SHAPED = {"zbv", "dualpipev"}  # stage placement: rank r holds stages r and 2R-1-r
SINGLE_STAGE_CLASSES = {"ScheduleGPipe", "Schedule1F1B"}  # take one stage object, not a list

# Normalisation applied to PyTorch's plan before comparing (printed at start-up):
NORMALISATION = [
    "None entries (idle slots) are dropped: only the order of the non-idle actions is compared.",
    "REDUCE_GRAD (and UNSHARD/RESHARD, if any) are dropped from torch's plan; our U (optimizer step) "
    "actions are dropped from ours. Neither is a pipeline compute action, and each side places them its own way.",
    "OVERLAP_F_B (DualPipeV's fused forward+backward, printed (aF..;bB..)OVERLAP_F_B) is expanded into its "
    "sub-actions in order, F then B: that is what torch's runtime runs when no overlap function is registered, "
    "and how our generator writes the pair.",
    "FULL_BACKWARD (B) and BACKWARD_INPUT+BACKWARD_WEIGHT (I..W) are NOT merged or split: B must match B, "
    "I must match I, W must match W.",
]

# Deliberate differences between our generators and PyTorch's. Key: (schedule, R, M, V). A case listed
# here passes only if the difference is exactly the documented one (see `check_documented`).
#
# "torch-rejects-rounds": PyTorch's interleaved schedules (Interleaved1F1B, InterleavedZeroBubble) require
# M % max(1, M // R) == 0 for every V. With V = 1 the rounds cannot change the order: the local stage index
# (op // per_round) % V is always 0, and the warm-up (V-1)*per_round + k*(R-1-r) does not involve per_round.
# So we accept any M when V = 1 (that is also how zb-h1, ZB-H1, gets every M). The check: torch raises its
# rounds ValueError, we accept, and our order (and lowering) equals what torch's own per-rank generator
# produces for that shape with only the rounds check lifted.
_ROUNDS_REASON = ("torch requires M % max(1, M // R) == 0 for interleaved schedules even at V = 1, where the "
                  "rounds cannot change the order; we accept any M at V = 1")
#
# "torch-1f1b-ir-last-rank": a bug in torch 2.11's Schedule1F1B._get_pipeline_order (the plan it exposes as
# pipeline_order; its runtime, _step_microbatches, does not use it). On the last rank there are no warm-up
# forwards, and the builder advances its forward counter before the first steady-state forward, so that rank's
# forwards are numbered 1..M instead of 0..M-1 (e.g. R=2, M=2: rank 1 is 1F1,1B0,1F2,1B1). The runtime counts
# forwards from 0 on every rank (min(M, R - stage) warm-up forwards, then B/F pairs), which is our order.
# The check: torch's last-rank forwards are exactly 1..M, and once they are renumbered 0..M-1 the whole plan
# (compute order and lowering) equals ours. If torch fixes this, the check fails and the entries should go.
_1F1B_REASON = ("torch 2.11's Schedule1F1B.pipeline_order numbers the last rank's forwards 1..M instead of "
                "0..M-1 (its runtime order, which is ours, counts from 0)")
DOCUMENTED = {}
for _R, _M in ((2, 5), (4, 9), (8, 17)):
    for _name in ("interleaved-1f1b", "interleaved-zb", "zb-h1"):
        DOCUMENTED[(_name, _R, _M, 1)] = ("torch-rejects-rounds", _ROUNDS_REASON)
for _R in (2, 4, 8):
    for _M in (_R, _R + 1, 2 * _R + 1):
        DOCUMENTED[("1f1b", _R, _M, 1)] = ("torch-1f1b-ir-last-rank", _1F1B_REASON)


def case_list(quick):
    """(schedule, R, M, V) cases. Includes the smallest valid M, odd M, and shapes that should be rejected."""
    cases = []

    def add(name, R, Ms, V):
        for M in sorted(set(m for m in Ms if m >= 1)):
            cases.append((name, R, M, V))

    for R in (2, 4, 8):
        if quick:
            add("gpipe", R, [1, R + 1], 1)
            add("1f1b", R, [R - 1, R, 2 * R + 1], 1)
            add("interleaved-1f1b", R, [1, R + 1, 2 * R + 1], 2)
            add("looped-bfs", R, [1, 2 * R + 1], 2)
            add("interleaved-zb", R, [1, R + 1, 2 * R + 1], 2)
            add("zbv", R, [1, 2 * R + 1], 2)
            add("dualpipev", R, [2 * R - 1, 2 * R, 2 * R + 1], 2)
            add("interleaved-1f1b", R, [2 * R + 1], 1)  # documented difference
            continue
        add("gpipe", R, [1, 2, 3, R, 2 * R + 1], 1)
        add("1f1b", R, [R - 1, R, R + 1, 2 * R + 1], 1)  # R - 1: both must reject
        for name in ("interleaved-1f1b", "interleaved-zb"):
            # 2R+1 with V >= 2: M % rounds != 0, both reject; 1 and R+1: one round of M.
            add(name, R, [1, 2, 3, R, R + 1, 2 * R, 2 * R + 1, 3 * R], 2)
            add(name, R, [R, 2 * R, 2 * R + 1], 3)
            add(name, R, [2 * R], 4)
            add(name, R, [1, R, 2 * R + 1], 1)  # 2R+1 at V=1: documented difference
        add("looped-bfs", R, [1, 2, 3, R, 2 * R + 1], 2)
        add("looped-bfs", R, [R + 1], 3)
        add("looped-bfs", R, [R + 1], 4)
        add("looped-bfs", R, [3], 1)
        add("zbv", R, [1, 2, 3, R, 2 * R - 1, 2 * R + 1, 3 * R], 2)
        add("dualpipev", R, [2 * R - 1, 2 * R, 2 * R + 1, 3 * R + 1], 2)  # 2R-1: both must reject
        add("zb-h1", R, [R, 2 * R + 1], 1)
    # V != 2 for the V-shaped schedules: both must reject.
    add("zbv", 4, [8], 4)
    add("dualpipev", 4, [8], 1)
    return cases


# ---------------------------------------------------------------------------------------------------
# Actions are compared as plain tuples (stage, kind, microbatch) with kind one of
# F I W B SEND_F RECV_F SEND_B RECV_B and microbatch None where there is none.

_ACTION_RE = re.compile(r"^(\d+)(SEND_F|RECV_F|SEND_B|RECV_B|F|I|W|B|U)(\d*)$")
COMPUTE = ("F", "I", "W", "B")
COMMS = ("SEND_F", "RECV_F", "SEND_B", "RECV_B")


def fmt(a):
    return f"{a[0]}{a[1]}{'' if a[2] is None else a[2]}"


def parse_ours(text):
    """Our CSV: one row per rank, a cell per action, empty cells idle. U is dropped (see NORMALISATION)."""
    ranks = []
    for line in text.splitlines():
        row = []
        for cell in line.split(","):
            cell = cell.strip().strip('"')
            if not cell:
                continue
            m = _ACTION_RE.match(cell)
            if not m:
                raise ValueError(f"cannot read our action '{cell}'")
            if m.group(2) == "U":
                continue
            row.append((int(m.group(1)), m.group(2), int(m.group(3)) if m.group(3) else None))
        ranks.append(row)
    while ranks and not ranks[-1]:
        ranks.pop()
    return ranks


def run_ours(pippy, name, R, M, V, lowered):
    cmd = [pippy, "schedule", "--schedule", name, "--ranks", str(R), "--microbatches", str(M),
           "--stages-per-rank", str(V), "--format", "csv"]
    if lowered:
        cmd.append("--lowered")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
        return None, (msg[-1] if msg else f"exit status {p.returncode}")
    return parse_ours(p.stdout), None


# ---------------------------------------------------------------------------------------------------
# PyTorch side

def import_torch():
    import torch  # noqa: F401  (fails loudly if torch is missing)
    from torch.distributed.pipelining import schedules as S
    from torch.distributed.pipelining._utils import generate_stage_to_rank_mapping
    from torch.distributed.pipelining.stage import _PipelineStageBase

    class PlanOnlyStage(_PipelineStageBase):
        """A stage object carrying only the sizes the schedule constructors read.

        _PipelineStageBase.__init__ needs a process group (it asks the group for rank and size), so it is
        not called; the infra methods the base class declares abstract are stubbed. Schedules only build
        their plan in __init__ and never touch the stage's module or communication there."""

        def __init__(self, num_stages, group_size, group_rank):  # noqa: D107 (no super().__init__ on purpose)
            self.num_stages = num_stages
            self.group_size = group_size
            self.group_rank = group_rank
            self.group = None
            self.submod = None  # not an nn.Module: the torch.compile compatibility check skips it
            self.stage_index = group_rank

        def _create_grad_recv_info(self, *args, **kwargs):
            return ()

        def _prepare_forward_infra(self, *args, **kwargs):
            return ()

        def _prepare_backward_infra(self, *args, **kwargs):
            return None

    return torch.__version__, S, generate_stage_to_rank_mapping, PlanOnlyStage


class Torch:
    def __init__(self):
        self.version, self.S, self.mapping, self.Stage = import_torch()

    def build(self, name, R, M, V):
        """Returns (schedule object, None) or (None, 'ExceptionType: message')."""
        cls = getattr(self.S, TORCH_CLASS[name])
        stages = [self.Stage(R * V, R, 0) for _ in range(V)]
        try:
            if TORCH_CLASS[name] in SINGLE_STAGE_CLASSES:
                if V != 1:
                    # These classes take exactly one stage object; handing them V stages is not a shape
                    # torch can express, so it counts as torch rejecting the shape.
                    return None, f"{cls.__name__} runs one stage per rank (V={V})"
                sched = cls(stages[0], M)
            else:
                sched = cls(stages, M)
        except Exception as e:  # noqa: BLE001  (every rejection is reported with its type)
            return None, f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
        return sched, None

    def rounds_check_lifted_order(self, name, R, M, V):
        """PyTorch's own per-rank generator for an interleaved schedule, with only the constructor's
        M % rounds check left out (for the documented 'torch-rejects-rounds' difference)."""
        cls = getattr(self.S, TORCH_CLASS[name])
        obj = cls.__new__(cls)
        obj.pp_group_size = R
        obj.n_local_stages = V
        obj._n_microbatches = M
        obj.rank = 0
        obj.number_of_rounds = max(1, M // R)
        obj.microbatches_per_round = M // obj.number_of_rounds
        obj.pipeline_order = {r: obj._calculate_single_rank_operations(r) for r in range(R)}
        if hasattr(obj, "_add_bubbles_to_actions"):
            obj.pipeline_order = obj._add_bubbles_to_actions(R * V)
        return obj.pipeline_order

    def stage_to_rank(self, name, R, V):
        return dict(self.mapping(R, R * V, style="v" if name in V_SHAPED else "loop"))

    def normalise(self, order, R):
        """PyTorch's pipeline_order -> {rank: [tuple]} under NORMALISATION."""
        out = {}
        for r in range(R):
            row = []
            for a in order.get(r, []):
                if a is None:
                    continue
                subs = a.sub_actions if a.sub_actions is not None else (a,)
                for s in subs:
                    kind = s.computation_type.value
                    if kind in COMPUTE:
                        row.append((s.stage_index, kind, s.microbatch_index))
            out[r] = row
        return out

    def lower(self, compute, stage_to_rank, num_stages):
        """Lower a normalised compute order with torch's _add_send_recv."""
        S = self.S
        kinds = {"F": S.FORWARD, "I": S.BACKWARD_INPUT, "W": S.BACKWARD_WEIGHT, "B": S.FULL_BACKWARD}
        actions = {r: [S._Action(st, kinds[k], mb) for st, k, mb in row] for r, row in compute.items() if row}
        lowered = S._add_send_recv(actions, stage_to_rank=lambda s: stage_to_rank[s], num_stages=num_stages)
        return {r: [(a.stage_index, a.computation_type.value, a.microbatch_index) for a in lowered.get(r, [])]
                for r in compute}

    @staticmethod
    def comms_of(order_with_comms, R):
        """SEND/RECV actions of torch's own lowered plan (pipeline_order_with_comms), in order."""
        out = {}
        for r in range(R):
            out[r] = [(a.stage_index, a.computation_type.value, a.microbatch_index)
                      for a in order_with_comms.get(r, []) if a is not None and a.computation_type.value in COMMS]
        return out


# ---------------------------------------------------------------------------------------------------
# Comparisons

def first_difference(ours, theirs):
    """(position, ours-or-'<end>', theirs-or-'<end>') of the first differing entry, or None."""
    for i in range(max(len(ours), len(theirs))):
        a = fmt(ours[i]) if i < len(ours) else "<end>"
        b = fmt(theirs[i]) if i < len(theirs) else "<end>"
        if a != b:
            return i, a, b
    return None


def compare_compute(ours, theirs, R):
    """None when every rank's compute order is equal, else a one-line reason naming the first difference."""
    for r in range(R):
        o = ours[r] if r < len(ours) else []
        t = theirs.get(r, [])
        d = first_difference(o, t)
        if d:
            return f"rank {r} position {d[0]}: ours {d[1]} vs torch {d[2]} ({len(o)} vs {len(t)} actions)"
    if len(ours) > R:
        return f"ours has {len(ours)} rank rows, expected {R}"
    return None


def compare_placement(ours, stage_to_rank):
    for r, row in enumerate(ours):
        for a in row:
            if stage_to_rank.get(a[0]) != r:
                return f"ours runs stage {a[0]} on rank {r}, torch places it on rank {stage_to_rank.get(a[0])}"
    return None


def links(lowered, stage_to_rank):
    """Per ordered rank pair (src, dst): the messages in the order src sends them and in the order dst
    receives them. A message is named by its producer: ('F', stage, mb) is the activation stage sends to
    stage+1, ('B', stage, mb) the gradient stage sends to stage-1."""
    sends = collections.defaultdict(list)
    recvs = collections.defaultdict(list)
    for r, row in lowered.items():
        for st, kind, mb in row:
            if kind == "SEND_F":
                sends[(r, stage_to_rank[st + 1])].append(("F", st, mb))
            elif kind == "SEND_B":
                sends[(r, stage_to_rank[st - 1])].append(("B", st, mb))
            elif kind == "RECV_F":
                recvs[(stage_to_rank[st - 1], r)].append(("F", st - 1, mb))
            elif kind == "RECV_B":
                recvs[(stage_to_rank[st + 1], r)].append(("B", st + 1, mb))
    return sends, recvs


def lowering_problems(lowered, stage_to_rank, who):
    """Properties every lowering must have: per-link FIFO (each rank pair receives in the order it sends,
    which implies the same for every stage pair) and each receive before the compute that consumes it."""
    sends, recvs = links(lowered, stage_to_rank)
    for link in sorted(set(sends) | set(recvs)):
        if sends.get(link, []) != recvs.get(link, []):
            s, d = sends.get(link, []), recvs.get(link, [])
            i = next((i for i in range(max(len(s), len(d))) if i >= len(s) or i >= len(d) or s[i] != d[i]), 0)
            return (f"{who}: rank {link[0]}->{link[1]} message {i}: sent {s[i] if i < len(s) else '<none>'}, "
                    f"received {d[i] if i < len(d) else '<none>'}")
    for r, row in lowered.items():
        pos = {a: i for i, a in enumerate(row)}
        for i, (st, kind, mb) in enumerate(row):
            if kind == "RECV_F":
                consumer = pos.get((st, "F", mb))
            elif kind == "RECV_B":
                consumer = pos.get((st, "I", mb), pos.get((st, "B", mb)))
            else:
                continue
            if consumer is None or consumer < i:
                return f"{who}: rank {r}: {st}{kind}{mb} is not followed by its consumer"
    return None


def compare_comms(ours_lowered, torch_lowered, torch_native, stage_to_rank, R):
    """Compares our --lowered output with torch's lowering of the same compute order.

    Exact per-position equality is NOT expected. Both lowerings put each SEND right after the compute
    action that produced the tensor, but they place receives differently: torch's _add_send_recv walks the
    ranks in lock-step and appends the RECV to the receiver's list at the moment the sender runs (so it can
    sit well before the consumer), while ours puts each RECV right before its consumer (earlier only where a
    rank pair must receive in its send order). So this checks, and returns None when all hold:
      a. per rank, the sequence of compute and SEND actions (RECVs removed) is identical;
      b. per rank, the multiset of RECV actions is identical;
      c. per rank pair, the sequence of messages sent and the sequence received are identical between us
         and torch, and within each lowering the receive order equals the send order (FIFO per link);
      d. within each lowering every RECV comes before the compute action that consumes it;
      e. the same a-c against torch's own lowered plan (pipeline_order_with_comms, with DualPipeV's
         OVERLAP_F_B unexpanded) where the class builds one: only SEND order, RECV multisets and links,
         since its fused actions move sends by a slot relative to the expanded order.
    Returns (problem or None, number of ranks whose lowered rows are position-identical)."""
    identical = 0
    for r in range(R):
        o, t = ours_lowered[r], torch_lowered.get(r, [])
        if o == t:
            identical += 1
        o_nr = [a for a in o if a[1] not in ("RECV_F", "RECV_B")]
        t_nr = [a for a in t if a[1] not in ("RECV_F", "RECV_B")]
        d = first_difference(o_nr, t_nr)
        if d:
            return f"rank {r} compute+send position {d[0]}: ours {d[1]} vs torch {d[2]}", identical
        o_rv = sorted(a for a in o if a[1] in ("RECV_F", "RECV_B"))
        t_rv = sorted(a for a in t if a[1] in ("RECV_F", "RECV_B"))
        if o_rv != t_rv:
            extra = [fmt(a) for a in (collections.Counter(o_rv) - collections.Counter(t_rv))]
            missing = [fmt(a) for a in (collections.Counter(t_rv) - collections.Counter(o_rv))]
            return f"rank {r} receives: only ours {extra[:3]}, only torch {missing[:3]}", identical
    for lowered, who in ((ours_lowered_dict(ours_lowered), "ours"), (torch_lowered, "torch")):
        p = lowering_problems(lowered, stage_to_rank, who)
        if p:
            return p, identical
    o_send, o_recv = links(ours_lowered_dict(ours_lowered), stage_to_rank)
    t_send, t_recv = links(torch_lowered, stage_to_rank)
    if o_send != t_send or o_recv != t_recv:
        return "per-link message order differs", identical
    if torch_native is not None:
        for r in range(R):
            o = [a for a in ours_lowered[r] if a[1] in COMMS]
            n = torch_native.get(r, [])
            if [a for a in o if a[1].startswith("SEND")] != [a for a in n if a[1].startswith("SEND")]:
                return f"rank {r}: SEND order differs from torch's own lowered plan", identical
            if sorted(a for a in o if a[1].startswith("RECV")) != sorted(a for a in n if a[1].startswith("RECV")):
                return f"rank {r}: RECV set differs from torch's own lowered plan", identical
        n_send, n_recv = links(torch_native, stage_to_rank)
        if n_send != o_send or n_recv != o_recv:
            return "per-link message order differs from torch's own lowered plan", identical
    return None, identical


def ours_lowered_dict(rows):
    return {r: row for r, row in enumerate(rows)}


# ---------------------------------------------------------------------------------------------------

def run_case(pippy, torch_side, name, R, M, V):
    """Returns (compute column, comms column, passed, detail-or-None)."""
    ours, our_err = run_ours(pippy, name, R, M, V, lowered=False)
    sched, torch_err = torch_side.build(name, R, M, V)
    documented = DOCUMENTED.get((name, R, M, V))

    if documented:
        return check_documented(pippy, torch_side, name, R, M, V, documented, ours, our_err, torch_err)

    if our_err and torch_err:
        # A rejection must be torch's own argument check (ValueError), not a failure of the stand-in stage.
        if not torch_err.startswith(("ValueError", TORCH_CLASS[name])):
            return f"differs: torch failed unexpectedly ({torch_err})", "-", False, None
        return "both reject", "-", True, f"ours: {our_err[:90]} | torch: {torch_err[:90]}"
    if our_err:
        return f"differs: only ours rejects ({our_err})", "-", False, None
    if torch_err:
        return f"differs: only torch rejects ({torch_err})", "-", False, None

    theirs = torch_side.normalise(sched.pipeline_order, R)
    # Multi-stage classes infer their stage -> rank map from the plan; it must be the looped/V map we assume.
    inferred = getattr(sched, "stage_index_to_group_rank", None)
    if inferred is not None and TORCH_CLASS[name] not in SINGLE_STAGE_CLASSES:
        expected = torch_side.stage_to_rank(name, R, V)
        if dict(inferred) != expected:
            return f"differs: torch's plan places stages {dict(inferred)}, not {expected}", "-", False, None
    return compare_plans(pippy, torch_side, name, R, M, V, ours, theirs,
                         getattr(sched, "pipeline_order_with_comms", None))


def compare_plans(pippy, torch_side, name, R, M, V, ours, theirs, native_with_comms):
    stage_to_rank = torch_side.stage_to_rank(name, R, V)
    problem = compare_placement(ours, stage_to_rank) or compare_compute(ours, theirs, R)
    if problem:
        return f"differs: {problem}", "-", False, None
    compute_col = "equal"

    ours_low, err = run_ours(pippy, name, R, M, V, lowered=True)
    if err:
        return compute_col, f"differs: --lowered fails ({err})", False, None
    if [[a for a in row if a[1] in COMPUTE] for row in ours_low] != [ours[r] for r in range(len(ours))]:
        return compute_col, "differs: --lowered changes the compute order", False, None
    try:
        torch_low = torch_side.lower(theirs, stage_to_rank, R * V)
    except Exception as e:  # noqa: BLE001
        return compute_col, f"differs: torch's _add_send_recv fails ({type(e).__name__}: {e})", False, None
    native = Torch.comms_of(native_with_comms, R) if native_with_comms else None
    problem, identical = compare_comms(ours_low, torch_low, native, stage_to_rank, R)
    if problem:
        return compute_col, f"differs: {problem}", False, None
    comms_col = "equal" if identical == R else f"equal* (recv slots same on {identical}/{R} ranks)"
    return compute_col, comms_col, True, None


def sched_of(torch_side, name, R, M, V):
    sched, err = torch_side.build(name, R, M, V)
    if err:
        raise RuntimeError(err)
    return sched


def check_documented(pippy, torch_side, name, R, M, V, documented, ours, our_err, torch_err):
    kind, _reason = documented
    if kind == "torch-rejects-rounds":
        if our_err:
            return f"differs: documented '{kind}' but ours rejects ({our_err})", "-", False, None
        if not torch_err or "multiple of the number of rounds" not in torch_err:
            return (f"differs: documented '{kind}' but torch {'accepts' if not torch_err else 'says: ' + torch_err}",
                    "-", False, None)
        theirs = torch_side.normalise(torch_side.rounds_check_lifted_order(name, R, M, V), R)
        compute_col, comms_col, ok, _ = compare_plans(pippy, torch_side, name, R, M, V, ours, theirs, None)
        if not ok:
            return f"documented '{kind}', but beyond it: {compute_col}", comms_col, False, None
        return f"documented: {kind} (else {compute_col})", comms_col, True, None
    if kind == "torch-1f1b-ir-last-rank":
        if our_err or torch_err:
            return f"differs: documented '{kind}' but ours: {our_err}, torch: {torch_err}", "-", False, None
        theirs = torch_side.normalise(sched_of(torch_side, name, R, M, V).pipeline_order, R)
        last = R - 1
        forwards = [a[2] for a in theirs[last] if a[1] == "F"]
        if forwards != list(range(1, M + 1)):
            return (f"differs: documented '{kind}' but torch's rank {last} forwards are {forwards[:4]}...",
                    "-", False, None)
        theirs[last] = [(st, k, mb - 1) if k == "F" else (st, k, mb) for st, k, mb in theirs[last]]
        compute_col, comms_col, ok, _ = compare_plans(pippy, torch_side, name, R, M, V, ours, theirs, None)
        if not ok:
            return f"documented '{kind}', but beyond it: {compute_col}", comms_col, False, None
        return f"documented: {kind} (else {compute_col})", comms_col, True, None
    return f"differs: unknown documented kind '{kind}'", "-", False, None


# ---------------------------------------------------------------------------------------------------
# Expected CSV files

ARTIFACT_PATTERNS = [
    # (file name pattern, our schedule, how R, V, M come out of the match and the file)
    (re.compile(r"^dualpipev_(\d+)rank_(\d+)mb\.csv$"), "dualpipev"),
    (re.compile(r"^zb1p_(\d+)rank_(\d+)stagep_compute\.csv$"), "interleaved-zb"),
]


def shipped_csvs(torch_side):
    import torch
    root = os.path.dirname(torch.__file__)
    found = []
    for d, _, files in os.walk(root):
        found += [os.path.join(d, f) for f in files if f.endswith(".csv")]
    return root, sorted(found)


def check_artifact(pippy, torch_side, path):
    """Compares a compute-only expected CSV from PyTorch's tests with ours (and with torch's own generator,
    to tell an expected generator output from a hand-written test schedule)."""
    base = os.path.basename(path)
    for pattern, name in ARTIFACT_PATTERNS:
        m = pattern.match(base)
        if not m:
            continue
        S = torch_side.S
        with open(path, newline="") as f:
            rows = [[c for c in line.rstrip("\r\n").split(",")] for line in f if line.strip()]
        # Cells like (0F7;7B3)OVERLAP_F_B hold a comma-free sub-action list, so a plain split is enough.
        order = {r: [S._Action.from_str(c) for c in row] for r, row in enumerate(rows)}
        R = len(rows)
        theirs = torch_side.normalise(order, R)
        if name == "dualpipev":
            V, M = 2, int(m.group(2))
        else:
            V = int(m.group(2))
            M = 1 + max(a[2] for row in theirs.values() for a in row if a[2] is not None)
        label = (base, R, M, V)
        ours, err = run_ours(pippy, name, R, M, V, lowered=False)
        if err:
            return label, f"differs: ours rejects ({err})", False
        diff = compare_compute(ours, theirs, R)
        if not diff:
            return label, f"equal ({name})", True
        sched, terr = torch_side.build(name, R, M, V)
        if sched is None:
            gen_diff = f"torch rejects ({terr})"
        else:
            generated = torch_side.normalise(sched.pipeline_order, R)
            gen_diff = compare_compute([generated[r] for r in range(R)], theirs, R)
        if gen_diff:
            return label, (f"not a {TORCH_CLASS[name]} output (torch's own generator differs too: {gen_diff}); "
                           f"ours differs as torch's does"), True
        return label, f"differs from {name}: {diff}", False
    return (base, "-", "-", "-"), "not a compute-only schedule CSV this script knows; skipped", True


# ---------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pippy", help="path to the pippy binary")
    ap.add_argument("--quick", action="store_true", help="fewer micro-batch counts")
    ap.add_argument("--artifacts", metavar="DIR",
                    help="also compare the compute-only CSVs in DIR (e.g. PyTorch's test/distributed/pipelining/artifacts)")
    args = ap.parse_args()
    start = time.monotonic()

    pippy = os.path.abspath(args.pippy)
    if not os.access(pippy, os.X_OK):
        print(f"error: {pippy} is not an executable", file=sys.stderr)
        return 2
    try:
        torch_side = Torch()
    except ImportError as e:
        print(f"SKIP: torch.distributed.pipelining cannot be imported ({e})")
        return 77
    print(f"torch {torch_side.version}; pippy {pippy}")
    print("Normalisation of torch's plan before comparing:")
    for line in NORMALISATION:
        print(f"  - {line}")
    print("Documented deliberate differences (pass only if exactly this difference is found):")
    by_kind = collections.defaultdict(list)
    for key in sorted(DOCUMENTED):
        by_kind[DOCUMENTED[key]].append(key)
    for (kind, reason), keys in by_kind.items():
        print(f"  - {kind}: {reason}")
        print("      cases: " + ", ".join(f"{n} R={R} M={M} V={V}" for n, R, M, V in keys))
    print()

    rows = []
    passed = failed = 0
    for name, R, M, V in case_list(args.quick):
        try:
            compute_col, comms_col, ok, detail = run_case(pippy, torch_side, name, R, M, V)
        except Exception as e:  # noqa: BLE001  (a crash in one case is that case's failure)
            compute_col, comms_col, ok, detail = f"error: {type(e).__name__}: {e}", "-", False, None
        rows.append((name, str(R), str(M), str(V), compute_col, comms_col, "pass" if ok else "FAIL"))
        if detail:
            rows.append(("", "", "", "", f"  {detail}", "", ""))
        passed += ok
        failed += not ok

    torch_root, csvs = shipped_csvs(torch_side)
    artifact_rows = []
    if args.artifacts:
        for f in sorted(os.listdir(args.artifacts)):
            if f.endswith(".csv"):
                csvs.append(os.path.join(args.artifacts, f))
    for path in csvs:
        label, result, ok = check_artifact(pippy, torch_side, path)
        artifact_rows.append((label, result, ok))
        passed += ok
        failed += not ok

    header = ("schedule", "R", "M", "V", "compute order", "communication", "result")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    widths[4] = min(widths[4], 60)
    line = lambda r: "  ".join(c.ljust(w) if i < 6 else c for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for r in rows:
        print(line(r))
    print()
    print("equal* = same compute+SEND sequence per rank, same RECV set per rank, same per-link message order and")
    print("         FIFO on every link, each RECV before its consumer; RECV slots differ because torch places a")
    print("         receive when its sender runs and we place it right before its consumer (see compare_comms).")
    print()
    if not csvs:
        print(f"Expected CSVs: none shipped in the torch package (searched {torch_root} for *.csv)"
              + ("" if args.artifacts else "; pass --artifacts DIR to compare a PyTorch checkout's artifacts") + ".")
    else:
        print("Expected CSVs:")
        for (base, R, M, V), result, ok in artifact_rows:
            print(f"  {base} (R={R} M={M} V={V}): {result}: {'pass' if ok else 'FAIL'}")
    print(f"run time {time.monotonic() - start:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The same MLP trained by PyTorch as one plain module (no pipeline). Prints `step_us X` (mean of the
steps after the first two). Used by bench/runtime_bench.sh with the project's Python (torch 2.11; the
side-by-side with torch.distributed.pipelining is bench/peer_bench.sh)."""
import argparse, time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--in-dim", type=int, default=1024)
p.add_argument("--dims", default="1024,1024,1024,1024")
p.add_argument("--batch", type=int, default=256)
p.add_argument("--steps", type=int, default=12)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

mods, prev = [], a.in_dim
for d in [int(x) for x in a.dims.split(",")]:
    mods += [nn.Linear(prev, d), nn.ReLU()]
    prev = d
mods.append(nn.Linear(prev, 10))

model = nn.Sequential(*mods)

opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x = torch.randn(a.batch, a.in_dim)
y = torch.randint(0, 10, (a.batch,))
times = []
for step in range(a.steps):
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t0)
steady = times[2:] if len(times) > 2 else times
print(f"step_us {1e6 * sum(steady) / len(steady):.0f} loss {loss.item():.6f}")

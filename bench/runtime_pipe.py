#!/usr/bin/python3
"""The same MLP trained by PyTorch (Debian's python3-torch 1.13): with torch.distributed.pipeline.sync.Pipe
over 2 partitions on the CPU, or as one plain module. Prints `step_us X` (mean of the steps after the first
two). Used by bench/runtime_bench.sh; run it with /usr/bin/python3 (the system torch)."""
import argparse, os, socket, time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--mode", choices=["pipe", "plain"], default="pipe")
p.add_argument("--in-dim", type=int, default=1024)
p.add_argument("--dims", default="1024,1024,1024,1024")
p.add_argument("--batch", type=int, default=256)
p.add_argument("--microbatches", type=int, default=8)
p.add_argument("--steps", type=int, default=12)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--split", type=int, default=4, help="modules in the first partition")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

mods, prev = [], a.in_dim
for d in [int(x) for x in a.dims.split(",")]:
    mods += [nn.Linear(prev, d), nn.ReLU()]
    prev = d
mods.append(nn.Linear(prev, 10))

if a.mode == "pipe":
    from torch.distributed import rpc
    from torch.distributed.pipeline.sync import Pipe
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    rpc.init_rpc("worker", rank=0, world_size=1)
    model = Pipe(nn.Sequential(nn.Sequential(*mods[:a.split]), nn.Sequential(*mods[a.split:])),
                 chunks=a.microbatches)
    forward = lambda x: model(x).local_value()
else:
    model = nn.Sequential(*mods)
    forward = model

opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x = torch.randn(a.batch, a.in_dim)
y = torch.randint(0, 10, (a.batch,))
times = []
for step in range(a.steps):
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = F.cross_entropy(forward(x), y)
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - t0)
steady = times[2:] if len(times) > 2 else times
print(f"step_us {1e6 * sum(steady) / len(steady):.0f} loss {loss.item():.6f}")
if a.mode == "pipe":
    rpc.shutdown()

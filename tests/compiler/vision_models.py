#!/usr/bin/env python3
"""Small vision models written the way public model zoos write them, traced to TorchScript for the
compiler tests (random seeded weights, nothing downloaded).

    python vision_models.py OUT_DIR

Writes OUT_DIR/resnet.pt (train mode: BatchNorm uses batch statistics and updates its running ones),
OUT_DIR/resnet_eval.pt (the same net in eval mode) and OUT_DIR/vit.pt (patch projection, class token,
position embedding, pre-norm encoder blocks, head). Each is traced with torch.jit.trace on a [2, ...]
batch; Python's tracer records sizes with aten::size, so the files themselves accept other batch sizes.
Module names the tests split at: resnet: stem, stem_relu (no parameters), layer1, layer2, avgpool (no
parameters), fc; vit: patch, blocks.0 .. blocks.3, norm, head. OUT_DIR/resnet_marked.pt (traced) and
resnet_marked_scripted.pt (torch.jit.script) call pipe_split() (python/pippy_pipe_split.py) after layer1.
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from pippy_pipe_split import pipe_split  # noqa: E402


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8))
        self.stem_relu = nn.ReLU()
        self.layer1 = nn.Sequential(Block(8, 8, 1), Block(8, 8, 1))
        self.layer2 = nn.Sequential(Block(8, 16, 2), Block(16, 16, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem_relu(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MarkedResNet(ResNet):
    def forward(self, x):
        x = self.layer1(self.stem_relu(self.stem(x)))
        pipe_split()
        return self.fc(torch.flatten(self.avgpool(self.layer2(x)), 1))


class EncoderBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image=16, patch=4, dim=16, depth=4, heads=2, classes=10):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (image // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embedding = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head_drop = nn.Identity()  # timm's habit: a module whose forward has no node of its own
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x)  # [B, dim, h, w]
        b, d = x.shape[0], x.shape[1]
        x = x.reshape(b, d, -1).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embedding
        x = self.norm(self.blocks(x))
        return self.head(self.head_drop(x[:, 0]))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    resnet = ResNet().train()
    torch.jit.save(torch.jit.trace(resnet, x, check_trace=False), os.path.join(out, "resnet.pt"))
    torch.jit.save(torch.jit.trace(resnet.eval(), x), os.path.join(out, "resnet_eval.pt"))
    marked = MarkedResNet().eval()
    torch.jit.save(torch.jit.trace(marked, x), os.path.join(out, "resnet_marked.pt"))
    torch.jit.save(torch.jit.script(marked), os.path.join(out, "resnet_marked_scripted.pt"))
    vit = ViT().train()  # dropout is 0; eval mode under no_grad would take MultiheadAttention's fused path
    torch.jit.save(torch.jit.trace(vit, x, check_trace=False), os.path.join(out, "vit.pt"))


if __name__ == "__main__":
    main()

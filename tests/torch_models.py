"""PyTorch test architectures for the torch importer (and benchmarks).

Each builder returns ``(module, make_input)``: an ``nn.Module`` in eval mode with seeded random
weights (BatchNorm running statistics, gamma/beta and PReLU slopes randomised too, so a wrong
mapping shows), and ``make_input(rng, batch)`` giving a numpy input of that batch size
(float32 NCHW feature maps, or int64 token ids).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics/affine and PReLU slopes; returns the module in eval mode."""
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.3)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.4 + 0.05)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
    return module.eval()


def _images(c, h, w):
    return lambda rng, n: rng.standard_normal((n, c, h, w)).astype(np.float32)


# ---------------------------------------------------------------- 1. MLP 784-300-100-10
def mlp(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                      nn.Linear(100, 10), nn.Softmax(dim=1))
    return randomize(m, seed), _images(1, 28, 28)


# ---------------------------------------------------------------- 2. LeNet-5
def lenet5(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
    return randomize(m, seed), _images(1, 28, 28)


# ---------------------------------------------------------------- 3. VGG-style
def vgg(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(64, 10))
    return randomize(m, seed), _images(3, 32, 32)


# ---------------------------------------------------------------- 4. ResNet-style
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet(seed=0):
    torch.manual_seed(seed)
    return randomize(ResNet(), seed), _images(3, 16, 16)


# ---------------------------------------------------------------- 5. MobileNetV2-style
class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True)),
            InvertedResidual(16, 16, 1, 1), InvertedResidual(16, 24, 2, 6), InvertedResidual(24, 24, 1, 6),
            nn.Sequential(nn.Conv2d(24, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6(inplace=True)))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, 10))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.mean([2, 3]))


def mobilenetv2(seed=0):
    torch.manual_seed(seed)
    return randomize(MobileNetV2(), seed), _images(3, 32, 32)


# ---------------------------------------------------------------- 6. Xception-style
class SeparableConv2d(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), SeparableConv2d(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(),
                                  SeparableConv2d(cout, cout), nn.BatchNorm2d(cout), nn.MaxPool2d(3, 2, 1))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.body(x) + self.skip(x)


class Xception(nn.Module):
    def __init__(self):
        super().__init__()
        self.entry = nn.Sequential(nn.Conv2d(3, 16, 3, 2, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = XceptionBlock(16, 32)
        self.block2 = XceptionBlock(32, 48)
        self.exit = nn.Sequential(SeparableConv2d(48, 64), nn.BatchNorm2d(64), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.exit(self.block2(self.block1(self.entry(x))))
        return self.fc(self.pool(x).view(x.size(0), -1))


def xception(seed=0):
    torch.manual_seed(seed)
    return randomize(Xception(), seed), _images(3, 33, 33)


# ---------------------------------------------------------------- 7. Conv1D
class Conv1DNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 16, 5, padding="same")
        self.bn1 = nn.BatchNorm1d(16)
        self.pool = nn.MaxPool1d(2)
        self.c2 = nn.Conv1d(16, 32, 3, stride=2, dilation=2)
        self.c3 = nn.Conv1d(32, 32, 3, padding=1, groups=4)
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.c1(x))))
        x = F.silu(self.c2(x))
        x = F.avg_pool1d(F.gelu(self.c3(x)), 2)
        return self.head(F.adaptive_avg_pool1d(x, 1).squeeze(-1))


def conv1d(seed=0):
    torch.manual_seed(seed)
    return randomize(Conv1DNet(), seed), lambda rng, n: rng.standard_normal((n, 4, 64)).astype(np.float32)


# ---------------------------------------------------------------- 8. PReLU + ceil-mode pooling
def prelu_ceil(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.PReLU(16), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(16, 32, 3, padding=1), nn.PReLU(), nn.AvgPool2d(3, 2, padding=1, ceil_mode=True,
                                                                    count_include_pad=False),
        nn.Flatten(), nn.Linear(32 * 6 * 6, 10))
    return randomize(m, seed), _images(3, 23, 23)


# ---------------------------------------------------------------- 9. permuted flatten head
class PermutedFlatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(x.permute(0, 2, 3, 1).flatten(1))


def permuted_flatten(seed=0):
    torch.manual_seed(seed)
    return randomize(PermutedFlatten(), seed), _images(3, 16, 16)


# ---------------------------------------------------------------- 10. concatenated branches
class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b1 = nn.Conv2d(16, 8, 1)
        self.b2 = nn.Sequential(nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1))
        self.b3 = nn.Conv2d(16, 4, 5, padding=2)
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(16, 4, 1))
        self.mix = nn.Conv2d(36, 16, 1)
        self.fc = nn.Linear(16, 6)

    def forward(self, x):
        x = self.stem(x)
        y = F.relu(torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1))
        y = torch.cat([y, x[:, :8]], 1)
        y = self.mix(y)
        return self.fc(torch.mean(y, dim=(2, 3)))


def concat(seed=0):
    torch.manual_seed(seed)
    return randomize(Inception(), seed), _images(3, 12, 12)


# ---------------------------------------------------------------- 11. Embedding + LayerNorm (a tiny transformer)
class TinyTransformer(nn.Module):
    def __init__(self, vocab=50, seq=12, d=32, heads=2, classes=4):
        super().__init__()
        self.heads = heads
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.1)
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, d))
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        n, t = ids.shape
        x = self.emb(ids) + self.pos
        h = self.ln1(x)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        dh = q.shape[-1] // self.heads
        q = q.view(n, t, self.heads, dh).transpose(1, 2)
        k = k.view(n, t, self.heads, dh).transpose(1, 2)
        v = v.view(n, t, self.heads, dh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dh), dim=-1)
        a = (att @ v).transpose(1, 2).reshape(n, t, -1)
        x = x + self.proj(a)
        x = x + self.ff(self.ln2(x))
        return self.head(x.mean(dim=1))


def transformer(seed=0):
    torch.manual_seed(seed)
    return randomize(TinyTransformer(), seed), lambda rng, n: rng.integers(0, 50, (n, 12)).astype(np.int64)


ARCHITECTURES = {
    "mlp": mlp, "lenet5": lenet5, "vgg": vgg, "resnet": resnet, "mobilenetv2": mobilenetv2,
    "xception": xception, "conv1d": conv1d, "prelu_ceil": prelu_ceil, "permuted_flatten": permuted_flatten,
    "concat": concat, "transformer": transformer,
}

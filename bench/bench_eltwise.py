"""Speed of the NHWC eltwise kernels against peers measured in the same run.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_eltwise.py \
        --benchmark-only --benchmark-group-by=group --benchmark-columns=median,iqr,rounds

Depthwise 3x3 + bias + relu6 on MobileNetV2-like shapes, batch 1 and 16, vs torch (conv2d
groups=C, NCHW and channels_last, then relu6); convolutions with few output channels or a short
reduction (the direct kernel: LeNet-5's, MobileNetV2's stem and a 144->24 projection) with
their fused activation vs torch conv2d + activation; 2x2 pooling vs torch channels_last; softmax / layer norm vs numpy (and torch); an RGB
input's NCHW -> NHWC transpose (slimrt, and its AVX2 8x8-tile path) vs numpy and torch (every engine allocates
its output).
Every engine is pinned to the same thread count (SLIMRT_BENCH_THREADS, default 1).
Ratios: compare the medians inside one group.
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimrt._native import core

K = core.kernels
THREADS = int(os.environ.get("SLIMRT_BENCH_THREADS", "1"))
torch.set_num_threads(THREADS)
ISA = core.cpu_info()["isa"]

# name: (N, H, W, C, stride); batch 16 = MobileNetV2's throughput batch, tensors far bigger than the caches
DW_SHAPES = {
    "112x112x96_s2": (1, 112, 112, 96, 2),
    "56x56x144_s1": (1, 56, 56, 144, 1),
    "14x14x576_s1": (1, 14, 14, 576, 1),
    "b16_112x112x96_s2": (16, 112, 112, 96, 2),
    "b16_56x56x144_s1": (16, 56, 56, 144, 1),
    "b16_28x28x192_s1": (16, 28, 28, 192, 1),
}


def aligned_empty(shape):
    """A float32 array on a 64-byte boundary, as the runtime's arena gives every value."""
    n = int(np.prod(shape))
    raw = np.empty(n + 16, np.float32)
    start = (-raw.ctypes.data % 64) // 4
    return raw[start:start + n].reshape(shape)


# name: (N, H, W, C, O, K, stride, pad, act)
CONV_SHAPES = {
    "lenet_conv1_b1": (1, 28, 28, 1, 6, 5, 1, 2, "tanh"),
    "lenet_conv1_b64": (64, 28, 28, 1, 6, 5, 1, 2, "tanh"),
    "lenet_conv2_b64": (64, 14, 14, 6, 16, 5, 1, 0, "tanh"),
    "mbv2_stem_224": (1, 224, 224, 3, 32, 3, 2, 1, "relu6"),
    "mbv2_proj_56x56_144to24": (1, 56, 56, 144, 24, 1, 1, 0, "none"),
}
def slimrt_isa(engine):
    """The ISA a slimrt engine runs ("slimrt_avx2": the AVX2 path; "slimrt": the best one); skips when
    this CPU lacks it."""
    isa = "avx2" if engine == "slimrt_avx2" else ISA
    if isa not in core.cpu_info()["supported_isas"]:
        pytest.skip(f"{isa} not supported")
    return isa


_TORCH_ACT = {"tanh": torch.tanh, "relu6": F.relu6, "none": lambda t: t}


@pytest.mark.parametrize("engine", ["slimrt", "slimrt_avx2", "torch_nchw", "torch_channels_last"])
@pytest.mark.parametrize("shape", list(CONV_SHAPES))
def test_conv_direct(benchmark, shape, engine):
    N, H, W, C, O, k, s, p, act = CONV_SHAPES[shape]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    w = rng.standard_normal((O, k, k, C)).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    benchmark.group = f"conv {shape} {act} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS)
    if engine.startswith("slimrt"):
        isa = slimrt_isa(engine)
        pc = K.PackedConv2d(w, isa=isa)
        out = pc.run(x, bias=b, strides=[s, s], pads=[p] * 4, act=act, threads=THREADS)
        benchmark(pc.run, x, bias=b, strides=[s, s], pads=[p] * 4, act=act, threads=THREADS, out=out)
    else:
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        wt = torch.from_numpy(w).permute(0, 3, 1, 2).contiguous()
        bt = torch.from_numpy(b)
        if engine == "torch_channels_last":
            xt = xt.to(memory_format=torch.channels_last)
            wt = wt.to(memory_format=torch.channels_last)
        f = _TORCH_ACT[act]

        def run():
            with torch.no_grad():
                return f(F.conv2d(xt, wt, bt, stride=s, padding=p))

        benchmark(run)


# name: (N, H, W, C, kind): 2x2 stride-2 pooling; LeNet-5's (6 channels: one masked vector per pixel) and a wide one
POOL_SHAPES = {
    "lenet_b64_28x28x6_avg": (64, 28, 28, 6, "avg"),
    "b16_56x56x64_max": (16, 56, 56, 64, "max"),
}


@pytest.mark.parametrize("engine", ["slimrt", "slimrt_avx2", "torch_channels_last"])
@pytest.mark.parametrize("shape", list(POOL_SHAPES))
def test_pool2x2(benchmark, shape, engine):
    N, H, W, C, kind = POOL_SHAPES[shape]
    x = np.random.default_rng(0).standard_normal((N, H, W, C)).astype(np.float32)
    benchmark.group = f"pool {shape} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS)
    if engine.startswith("slimrt"):
        isa = slimrt_isa(engine)
        out = K.pool2d(x, kind, kernel=2, strides=2, isa=isa, threads=THREADS)
        benchmark(K.pool2d, x, kind, kernel=2, strides=2, isa=isa, threads=THREADS, out=out)
    else:
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        f = F.avg_pool2d if kind == "avg" else F.max_pool2d

        def run():
            with torch.no_grad():
                return f(xt, 2, 2)

        benchmark(run)


@pytest.mark.parametrize("engine", ["slimrt", "slimrt_avx2", "torch_nchw", "torch_channels_last"])
@pytest.mark.parametrize("shape", list(DW_SHAPES))
def test_dwconv3x3(benchmark, shape, engine):
    N, H, W, C, s = DW_SHAPES[shape]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    w = rng.standard_normal((3, 3, C)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    benchmark.group = f"dwconv3x3 {shape} relu6 threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS)
    if engine.startswith("slimrt"):
        isa = slimrt_isa(engine)
        oh, ow = (H - 1) // s + 1, (W - 1) // s + 1
        out = K.dwconv2d(x, w, b, strides=s, pads=1, act="relu6", isa=isa, threads=THREADS,
                         out=aligned_empty((N, oh, ow, C)))
        benchmark(K.dwconv2d, x, w, b, strides=s, pads=1, act="relu6", isa=isa, threads=THREADS, out=out)
    else:
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        wt = torch.from_numpy(w).permute(2, 0, 1).unsqueeze(1).contiguous()
        bt = torch.from_numpy(b)
        if engine == "torch_channels_last":
            xt = xt.to(memory_format=torch.channels_last)
            wt = wt.to(memory_format=torch.channels_last)

        def run():
            with torch.no_grad():
                return F.relu6(F.conv2d(xt, wt, bt, stride=s, padding=1, groups=C), inplace=True)

        benchmark(run)


SOFTMAX_SHAPES = {"attn_12x128x128": (12 * 128, 128), "cls_64x1000": (64, 1000), "long_8x8192": (8, 8192)}


def np_softmax(x, out):
    np.subtract(x, x.max(-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(-1, keepdims=True)
    return out


@pytest.mark.parametrize("engine", ["slimrt", "numpy", "torch"])
@pytest.mark.parametrize("shape", list(SOFTMAX_SHAPES))
def test_softmax(benchmark, shape, engine):
    x = np.random.default_rng(0).standard_normal(SOFTMAX_SHAPES[shape]).astype(np.float32)
    out = np.empty_like(x)
    benchmark.group = f"softmax {shape} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS)
    if engine == "slimrt":
        benchmark(K.softmax, x, isa=ISA, out=out, threads=THREADS)
    elif engine == "numpy":
        benchmark(np_softmax, x, out)
    else:
        xt = torch.from_numpy(x)
        benchmark(torch.softmax, xt, -1)


LN_SHAPES = {"bert_128x768": (128, 768), "vit_197x384": (197, 384), "wide_32x4096": (32, 4096)}


def np_layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    d = x - mu
    var = np.mean(d * d, -1, keepdims=True)
    return d / np.sqrt(var + eps) * g + b


@pytest.mark.parametrize("engine", ["slimrt", "numpy", "torch"])
@pytest.mark.parametrize("shape", list(LN_SHAPES))
def test_layer_norm(benchmark, shape, engine):
    rows, n = LN_SHAPES[shape]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, n)).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    out = np.empty_like(x)
    benchmark.group = f"layer_norm {shape} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS)
    if engine == "slimrt":
        benchmark(K.layer_norm, x, g, b, 1e-5, isa=ISA, out=out, threads=THREADS)
    elif engine == "numpy":
        benchmark(np_layer_norm, x, g, b, 1e-5)
    else:
        xt, gt, bt = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(b)
        benchmark(F.layer_norm, xt, (n,), gt, bt, 1e-5)


def bench_transpose(benchmark, x, perm, engine):
    """x.transpose(perm) made contiguous, by slimrt (at the engine's ISA), numpy or torch."""
    if engine.startswith("slimrt"):
        benchmark(K.transpose, x, perm, isa=slimrt_isa(engine), threads=THREADS)
    elif engine == "numpy":
        benchmark(lambda: np.ascontiguousarray(x.transpose(perm)))
    else:
        xt = torch.from_numpy(x)
        benchmark(lambda: xt.permute(*perm).contiguous())


@pytest.mark.parametrize("engine", ["slimrt", "slimrt_avx2", "numpy", "torch"])
@pytest.mark.parametrize("n", [1, 16])
def test_transpose_rgb(benchmark, n, engine):
    x = np.random.default_rng(0).standard_normal((n, 3, 224, 224)).astype(np.float32)
    benchmark.group = f"transpose NCHW->NHWC {n}x3x224x224 threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS)
    bench_transpose(benchmark, x, [0, 2, 3, 1], engine)


# Many-channel maps both ways: a feature map handed back to a framework (NHWC -> NCHW) and a
# many-channel NCHW input (NCHW -> NHWC). The 8x8 register tiles of a block run along the side
# whose rows are a multiple of 4 KB apart (see transpose2d_f32_avx2).
MAP_CASES = {"nhwc2nchw_64x64x128": ((1, 64, 64, 128), [0, 3, 1, 2]),
             "nhwc2nchw_56x56x144": ((1, 56, 56, 144), [0, 3, 1, 2]),
             "nchw2nhwc_512x14x14": ((1, 512, 14, 14), [0, 2, 3, 1]),
             "nchw2nhwc_128x64x64": ((1, 128, 64, 64), [0, 2, 3, 1])}


@pytest.mark.parametrize("engine", ["slimrt", "numpy", "torch"])
@pytest.mark.parametrize("case", list(MAP_CASES))
def test_transpose_map(benchmark, case, engine):
    shape, perm = MAP_CASES[case]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    benchmark.group = f"transpose {case} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS)
    bench_transpose(benchmark, x, perm, engine)

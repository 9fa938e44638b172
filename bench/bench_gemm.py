"""Speed of the fp32 GEMM (packed weights) against numpy/OpenBLAS, measured in the same run.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_gemm.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=min,median,iqr,rounds

Workload: y[M, N] = a[M, K] @ w[N, K].T (a torch Linear), M in {1, 16, 64, 256}, K, N in {512, 1024, 4096}.
slimrt runs a PackedSgemm packed once (packing is not timed) writing into a preallocated output;
numpy runs `a @ w.T`. Both engines use the same thread count (SLIMRT_BENCH_THREADS, default 2;
numpy's BLAS is pinned with threadpoolctl, or OPENBLAS_NUM_THREADS when threadpoolctl is missing; before
each slimrt benchmark the run pauses 0.2 s so that OpenBLAS's spinning workers, left busy by the previous
numpy benchmark, do not hold the second core).
bench/conftest.py prints the GFLOP/s of each engine and the slimrt/peer ratio per group.
SLIMRT_BENCH_QUICK=1 keeps only the K == N shapes. At M = 1 a third engine, read_bound, times
slimrt's stream sum over the weight array (kernels.sum: every weight read once and nothing else, at
the same thread count): how fast this machine streams the bytes any GEMV must read.

Also: GEMMs whose epilogue weighs (test_sgemm_epilogue: a short K with bias + relu6, or a residual from
DRAM) against numpy doing the same in place; and NHWC conv2d (PackedConv2d, weights packed once; for 3x3 stride-1 shapes also its Winograd path) vs
torch conv2d on channels_last tensors, with torch pinned to the same thread count (skipped when torch is not
installed), at batch 1 and, for MobileNetV2's 1x1 convolutions and two ResNet-18 shapes, at batch 16.
"""
import os
import time

THREADS = int(os.environ.get("SLIMRT_BENCH_THREADS", "2"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))  # before numpy loads its BLAS

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from slimrt._native import core  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

K = core.kernels
ISA = core.cpu_info()["isa"]
KN = [(k, n) for k in (512, 1024, 4096) for n in (512, 1024, 4096)]
if os.environ.get("SLIMRT_BENCH_QUICK"):
    KN = [(k, n) for (k, n) in KN if k == n]
SHAPES = [(m, k, n) for m in (1, 16, 64, 256) for (k, n) in KN]


@pytest.fixture(scope="module", autouse=True)
def pin_blas_threads():
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=THREADS):
        yield


@pytest.fixture(scope="module")
def operands():
    cache = {}

    def get(m, k, n):
        if (m, k, n) not in cache:
            rng = np.random.default_rng(m * 7 + k * 3 + n)
            a = rng.standard_normal((m, k), dtype=np.float32)
            w = rng.standard_normal((n, k), dtype=np.float32)
            cache.clear()  # keep one shape's operands alive at a time
            cache[(m, k, n)] = (a, w)
        return cache[(m, k, n)]

    return get


def quiet_blas():
    """OpenBLAS workers busy-wait for a while (2^28 cycles by default) after each call; on a 2-core
    machine they would hold the second core through the start of the next slimrt benchmark
    (measured: M=1 K=N=4096 at 2 threads 11 GFLOP/s right after numpy, 20.5 with the workers
    asleep). Wait until they sleep."""
    if THREADS > 1:
        time.sleep(0.2)


@pytest.mark.parametrize("engine", ["slimrt", "numpy", "read_bound"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M%d_K%d_N%d" % s)
def test_sgemm(benchmark, operands, shape, engine):
    m, k, n = shape
    if engine == "read_bound" and m != 1:
        pytest.skip("the read bound is measured for the batch-1 GEMV only")
    a, w = operands(m, k, n)
    benchmark.group = f"sgemm M={m} K={k} N={n} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS, flops=2 * m * n * k, isa=ISA)
    if engine == "slimrt":
        packed = K.PackedSgemm(w)
        out = np.empty((m, n), np.float32)
        quiet_blas()
        y = benchmark(packed.run, a, threads=THREADS, out=out)
    elif engine == "read_bound":
        # A GEMV must read every weight once: slimrt's stream sum (kernels.sum: widest loads, four
        # streams, one contiguous chunk per thread) reads those K*N floats once and does nothing else
        # (slimrt/read_bound near 1 = the GEMV runs at stream speed; where numpy takes less than
        # 1.2x the read_bound time, 1.2x numpy needs reading the weights faster than a plain stream).
        benchmark(K.sum, w, threads=THREADS)
        return
    else:
        wt = w.T
        y = benchmark(lambda: a @ wt)
    ref = a[:1].astype(np.float64) @ w.T.astype(np.float64)
    assert np.allclose(y[:1], ref, rtol=1e-3, atol=1e-2 * np.sqrt(k))


# GEMMs whose epilogue weighs: a short K (MobileNetV2's first expansion, bias + relu6 on every output) and
# a residual added from a tensor far bigger than the caches (a residual block at a big batch).
EPILOGUE_SHAPES = {
    # name: (M, K, N, epilogue)
    "M1344_K16_N96_bias_relu6": (1344, 16, 96, "bias_relu6"),
    "M1344_K24_N144_bias_relu6": (1344, 24, 144, "bias_relu6"),
    "M16384_K128_N256_residual": (16384, 128, 256, "residual"),
    "M65536_K64_N128_residual": (65536, 64, 128, "residual"),
}


@pytest.mark.parametrize("engine", ["slimrt", "numpy"])
@pytest.mark.parametrize("shape", list(EPILOGUE_SHAPES))
def test_sgemm_epilogue(benchmark, shape, engine):
    """slimrt: PackedSgemm with the epilogue fused (bias + relu6, or + residual); numpy: a @ w.T, then the
    same epilogue in place. SLIMRT_ISA=avx2 runs slimrt's AVX2 kernels (whole vectors stored unmasked)."""
    m, k, n, kind = EPILOGUE_SHAPES[shape]
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    res = rng.standard_normal((m, n), dtype=np.float32) if kind == "residual" else None
    benchmark.group = f"sgemm epilogue {shape} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS, flops=2 * m * n * k, isa=ISA)
    out = np.empty((m, n), np.float32)
    if engine == "slimrt":
        packed = K.PackedSgemm(w)
        quiet_blas()
        if kind == "residual":
            y = benchmark(packed.run, a, residual=res, threads=THREADS, out=out)
        else:
            y = benchmark(packed.run, a, bias=bias, act="relu6", threads=THREADS, out=out)
    else:
        wt = w.T

        def run():
            np.matmul(a, wt, out=out)
            if kind == "residual":
                return np.add(out, res, out=out)
            np.add(out, bias, out=out)
            return np.clip(out, 0, 6, out=out)
        y = benchmark(run)
    want = a[:4].astype(np.float64) @ w.T.astype(np.float64)
    want = want + res[:4] if kind == "residual" else np.clip(want + bias, 0, 6)
    assert np.allclose(y[:4], want, rtol=1e-3, atol=1e-3 * np.sqrt(k))


CONV_SHAPES = {
    # name: (N, H, W, C, O, k, stride, pad)
    "stem_224x224x3_o32_k3s2": (1, 224, 224, 3, 32, 3, 2, 1),
    "56x56x64_o64_k3": (1, 56, 56, 64, 64, 3, 1, 1),
    # ResNet-18's 3x3 convolutions at 112x112 input (Winograd F(4x4, 3x3) vs the direct / GEMM path)
    "28x28x64_o64_k3": (1, 28, 28, 64, 64, 3, 1, 1),
    "14x14x128_o128_k3": (1, 14, 14, 128, 128, 3, 1, 1),
    "7x7x256_o256_k3": (1, 7, 7, 256, 256, 3, 1, 1),
    "b16_14x14x128_o128_k3": (16, 14, 14, 128, 128, 3, 1, 1),
    "b16_4x4x512_o512_k3": (16, 4, 4, 512, 512, 3, 1, 1),
    "14x14x256_o1024_k1": (1, 14, 14, 256, 1024, 1, 1, 0),
    # MobileNetV2's 1x1 convolutions at its throughput batch (tensors far bigger than the caches)
    "b16_112x112x16_o96_k1": (16, 112, 112, 16, 96, 1, 1, 0),
    "b16_56x56x24_o144_k1": (16, 56, 56, 24, 144, 1, 1, 0),
    "b16_56x56x144_o24_k1": (16, 56, 56, 144, 24, 1, 1, 0),
    "b16_28x28x192_o32_k1": (16, 28, 28, 192, 32, 1, 1, 0),
}


def aligned_empty(shape):
    """A float32 array on a 64-byte boundary, as the runtime's arena gives every value."""
    n = int(np.prod(shape))
    raw = np.empty(n + 16, np.float32)
    start = (-raw.ctypes.data % 64) // 4
    return raw[start:start + n].reshape(shape)


@pytest.mark.parametrize("engine", ["slimrt", "slimrt_winograd", "torch_channels_last"])
@pytest.mark.parametrize("shape", list(CONV_SHAPES))
def test_conv2d(benchmark, shape, engine):
    """slimrt: the path the weight shape picks (direct or im2col GEMM); slimrt_winograd: Winograd F(4x4, 3x3)
    (3x3 stride-1 shapes only; a session picks it by its tile-count rule or by tuning)."""
    N, H, W, C, O, k, s, p = CONV_SHAPES[shape]
    if engine == "slimrt_winograd" and (k != 3 or s != 1 or ISA == "scalar"):
        pytest.skip("Winograd runs 3x3 stride-1 convolutions")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, H, W, C), dtype=np.float32)
    w = rng.standard_normal((O, k, k, C), dtype=np.float32) * 0.1
    b = rng.standard_normal(O, dtype=np.float32)
    oh = (H + 2 * p - k) // s + 1
    ow = (W + 2 * p - k) // s + 1
    benchmark.group = f"conv2d {shape} relu threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS, flops=2 * N * oh * ow * O * k * k * C, isa=ISA)
    if engine.startswith("slimrt"):
        packed = K.PackedConv2d(w, path="winograd" if engine == "slimrt_winograd" else "auto")
        out = aligned_empty((N, oh, ow, O))
        y = benchmark(packed.run, x, bias=b, strides=(s, s), pads=(p, p, p, p), act="relu", threads=THREADS,
                      out=out)
    else:
        torch = pytest.importorskip("torch")
        torch.set_num_threads(THREADS)
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        wt = torch.from_numpy(w).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        bt = torch.from_numpy(b)

        def run():
            with torch.no_grad():
                return torch.relu(torch.nn.functional.conv2d(xt, wt, bt, stride=s, padding=p))

        y = benchmark(run).permute(0, 2, 3, 1).numpy()
    assert y.shape == (N, oh, ow, O) and np.all(np.isfinite(y))

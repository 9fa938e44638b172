"""Speed of the 4-bit codebook and log2 GEMM against slimrt's int8 GEMM and dense fp32 GEMM,
measured in the same run.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_lutgemm.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=min,median,iqr,rounds

Workload: y[M, N] = x[M, K] @ W.T, K = N in {1024, 4096}, M in {1, 16, 64, 256}. One group per
(format, K, M). Formats: "codebook4_i8" (a shared 16-entry int8 table, the int8-lut Codebook),
"codebook4_i8_rows" (a 16-entry int8 table per output row: per-channel k-means) and "log2_4" (sign +
3-bit magnitude, per-row scale). Engines:
  slimrt   the kernel the runtime picks: kernels.LutQ8Matrix (int8 table decoded in registers,
           vpdpbusd, u8 activations quantized per row) where the ISA has it, else the fp32-table
           kernel
  lut_f32  the fp32-table LUT kernel (kernels.LutMatrix / kernels.Log2Matrix)
  int8     kernels.q8_pack(...).run_dynamic: int8 weights (twice the bytes), activations quantized
           per call
  fp32     kernels.PackedSgemm on the decoded weights
bench/conftest.py prints the ratios (peer time / slimrt time; > 1: slimrt faster). Issue 4's
targets: >= 1.5 vs int8 at M = 1, >= 0.8 at M >= 64. All engines at SLIMRT_BENCH_THREADS (2).
SLIMRT_BENCH_QUICK=1: K = N = 1024 and M in {1, 64} only.

Interleaved mode (the figures of reports), without pytest: the kernels alone, engines taking turns block
by block (bench/kernel_timing.py), ratios as the median of per-block ratios and the ratio of minima:
    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 bench/bench_lutgemm.py [--threads 1,2] [--kn 1024,4096]
        [--m 1,64] [--blocks 41] [--block-ms 0.5]
"""
import os

import numpy as np
import pytest

from slimrt import formats
from slimrt._native import core

THREADS = int(os.environ.get("SLIMRT_BENCH_THREADS", "2"))
QUICK = bool(os.environ.get("SLIMRT_BENCH_QUICK"))
K = core.kernels
KNS = [1024] if QUICK else [1024, 4096]
MS = [1, 64] if QUICK else [1, 16, 64, 256]
HAS_Q8 = hasattr(K, "q8_pack")
HAS_LUTQ8 = hasattr(K, "LutQ8Matrix") and K.LutQ8Matrix.has_kernel(None)
ENGINES = ["slimrt", "lut_f32", "fp32"] + (["int8"] if HAS_Q8 else [])

_cache = {}


def operands(kn, m):
    if (kn, m) not in _cache:
        _cache.clear()
        rng = np.random.default_rng(kn + m)
        idx = rng.integers(0, 16, (kn, kn))
        lut = np.sort(rng.integers(-127, 128, 16)).astype(np.int8)[None]
        cb = formats.Codebook(idx, lut, 4, shape=(kn, kn))
        lut_rows = np.sort(rng.integers(-127, 128, (kn, 16)), axis=1).astype(np.int8)
        cbr = formats.Codebook(idx, lut_rows, 4, axis=0, shape=(kn, kn))
        lg = formats.Log2(idx, (rng.random(kn) + 0.5).astype(np.float32) / 64, 4, axis=0, shape=(kn, kn))
        x = rng.standard_normal((m, kn), dtype=np.float32)
        _cache[(kn, m)] = (cb, cbr, lg, x)
    return _cache[(kn, m)]


def lut_matrix(t, kn, engine):
    if engine == "slimrt" and HAS_LUTQ8:
        if isinstance(t, formats.Codebook):
            return K.LutQ8Matrix.codebook(t.packed, t.lut, 4, kn, kn, t.axis == 0)
        return K.LutQ8Matrix.log2(t.packed, t.scale, 4, kn, kn)
    if isinstance(t, formats.Codebook):
        return K.LutMatrix(t.packed, t.lut.astype(np.float32), 4, kn, kn, t.axis == 0)
    return K.Log2Matrix(t.packed, t.scale, 4, kn, kn)


def int8_peer(wd):
    """The int8 engine's packed weights and per-row scales for the decoded matrix wd (symmetric, per row)."""
    amax = np.abs(wd).max(1)
    s = np.where(amax > 0, amax / 127, 1).astype(np.float32)
    return K.q8_pack(np.clip(np.round(wd / s[:, None]), -127, 127).astype(np.int8)), s


CASES = [(f, kn, m, e) for f in ("codebook4_i8", "codebook4_i8_rows", "log2_4") for kn in KNS for m in MS
         for e in ENGINES]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "%s_KN%d_M%d_%s" % c)
def test_lutgemm(benchmark, case):
    fmt, kn, m, engine = case
    cb, cbr, lg, x = operands(kn, m)
    t = {"codebook4_i8": cb, "codebook4_i8_rows": cbr, "log2_4": lg}[fmt]
    wd = t.to_dense()
    benchmark.group = f"{fmt} K=N={kn} M={m} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS, flops=2 * m * kn * kn)
    out = np.empty((m, kn), np.float32)
    if engine in ("slimrt", "lut_f32"):
        a = lut_matrix(t, kn, engine)
        y = benchmark(a.run, x, threads=THREADS, out=out)
    elif engine == "fp32":
        p = K.PackedSgemm(wd)
        y = benchmark(p.run, x, threads=THREADS, out=out)
    else:
        p, s = int8_peer(wd)
        y = benchmark(p.run_dynamic, x, s, threads=THREADS, out=out)
    ref = x[:1].astype(np.float64) @ wd.T.astype(np.float64)
    assert np.allclose(y[:1], ref, rtol=2e-2, atol=2e-2 * np.sqrt(kn) * np.abs(wd).max())


def interleaved(kns, ms, threads_list, blocks, block_ms):
    """The kernels alone, engines taking turns block by block (kernel_timing.py); prints each
    format's ratios to slimrt's int8 GEMM and to dense fp32 (> 1: the LUT kernel is faster)."""
    from kernel_timing import interleave, ratio
    print("peer/slimrt (> 1: slimrt's LUT kernel faster): median of %d per-block ratios (ratio of minima)" % blocks)
    for threads in threads_list:
        for kn in kns:
            for m in ms:
                cb, cbr, lg, x = operands(kn, m)
                out = np.empty((m, kn), np.float32)
                for fmt, t in (("codebook4_i8", cb), ("codebook4_i8_rows", cbr), ("log2_4", lg)):
                    wd = t.to_dense()
                    q, s = int8_peer(wd)
                    a, f, d = lut_matrix(t, kn, "slimrt"), lut_matrix(t, kn, "lut_f32"), K.PackedSgemm(wd)
                    times = interleave({
                        "slimrt": lambda r: a.run(x, threads=threads, out=out, repeat=r),
                        "int8": lambda r: q.run_dynamic(x, s, threads=threads, out=out, repeat=r),
                        "lut_f32": lambda r: f.run(x, threads=threads, out=out, repeat=r),
                        "fp32": lambda r: d.run(x, threads=threads, out=out, repeat=r)}, blocks, block_ms)
                    parts = ["vs %s x%.2f (min x%.2f)" % ((e,) + ratio(times, e, "slimrt"))
                             for e in ("int8", "lut_f32", "fp32")]
                    print("threads=%d K=N=%d M=%d %-18s slimrt %7.1f us  %s" % (
                        threads, kn, m, fmt, np.median(times["slimrt"]) * 1e6, "  ".join(parts)), flush=True)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="LUT GEMM kernels against int8 and fp32, interleaved, kernels alone")
    lst = lambda t: (lambda v: [t(a) for a in v.split(",")])  # noqa: E731
    ap.add_argument("--threads", type=lst(int), default=[1, 2])
    ap.add_argument("--kn", type=lst(int), default=[1024, 4096])
    ap.add_argument("--m", type=lst(int), default=[1, 64])
    ap.add_argument("--blocks", type=int, default=41)
    ap.add_argument("--block-ms", type=float, default=0.5, help="milliseconds per engine per block")
    a = ap.parse_args()
    interleaved(a.kn, a.m, a.threads, a.blocks, a.block_ms)

"""Speed of the codebook and log2 GEMM (kernels.LutMatrix / kernels.Log2Matrix, 4-bit) against
slimrt's int8 GEMM (kernels.q8_pack(...).run_dynamic: int8 weights, activations quantized per
call) and dense fp32 GEMM (kernels.PackedSgemm), measured in the same run.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_lutgemm.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=min,median,iqr,rounds

Workload: y[M, N] = x[M, K] @ W.T, K = N in {1024, 4096}, M in {1, 16, 64, 256}. One group per
(format, K, M); engine "slimrt" is the LUT kernel of that format. bench/conftest.py prints the
ratios (peer time / slimrt time; > 1: slimrt faster). All engines at SLIMRT_BENCH_THREADS (2).
SLIMRT_BENCH_QUICK=1: K = N = 1024 and M in {1, 64} only.
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
ENGINES = ["slimrt", "fp32"] + (["int8"] if HAS_Q8 else [])

_cache = {}


def operands(kn, m):
    if (kn, m) not in _cache:
        _cache.clear()
        rng = np.random.default_rng(kn + m)
        idx = rng.integers(0, 16, (kn, kn))
        lut = np.sort(rng.standard_normal(16)).astype(np.float32)[None]
        cb = formats.Codebook(idx, lut, 4, shape=(kn, kn))
        lg = formats.Log2(idx, (rng.random(kn) + 0.5).astype(np.float32), 4, axis=0, shape=(kn, kn))
        x = rng.standard_normal((m, kn), dtype=np.float32)
        _cache[(kn, m)] = (cb, lg, x)
    return _cache[(kn, m)]


CASES = [(f, kn, m, e) for f in ("codebook4", "log2_4") for kn in KNS for m in MS for e in ENGINES]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "%s_KN%d_M%d_%s" % c)
def test_lutgemm(benchmark, case):
    fmt, kn, m, engine = case
    cb, lg, x = operands(kn, m)
    t = cb if fmt == "codebook4" else lg
    wd = t.to_dense()
    benchmark.group = f"{fmt} K=N={kn} M={m} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS, flops=2 * m * kn * kn)
    out = np.empty((m, kn), np.float32)
    if engine == "slimrt":
        a = (K.LutMatrix(t.packed, t.lut, 4, kn, kn, False) if fmt == "codebook4"
             else K.Log2Matrix(t.packed, t.scale, 4, kn, kn))
        y = benchmark(a.run, x, threads=THREADS, out=out)
    elif engine == "fp32":
        p = K.PackedSgemm(wd)
        y = benchmark(p.run, x, threads=THREADS, out=out)
    else:
        amax = np.abs(wd).max(1)
        s = np.where(amax > 0, amax / 127, 1).astype(np.float32)
        q = np.clip(np.round(wd / s[:, None]), -127, 127).astype(np.int8)
        p = K.q8_pack(q)
        y = benchmark(p.run_dynamic, x, s, threads=THREADS, out=out)
    ref = x[:1].astype(np.float64) @ wd.T.astype(np.float64)
    assert np.allclose(y[:1], ref, rtol=2e-2, atol=2e-2 * np.sqrt(kn) * np.abs(wd).max())

"""Speed of the CSR SpMM (kernels.CsrMatrix) against slimrt's dense fp32 GEMM (kernels.PackedSgemm)
and torch.sparse CSR matmul, measured in the same run.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_spmm.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=min,median,iqr,rounds

Workload: y[M, N] = x[M, K] @ W.T with W [N, K] random-sparse (uniform mask), K = N in {1024, 4096},
M in {1, 4, 16, 64}, sparsity in {0.5, 0.6, 0.7, 0.8, 0.9, 0.95}. f32 CSR values, uint16 columns.
Engines: "slimrt" (CsrMatrix, packed once, preallocated out; at batch 1 and 2 it runs the sliced-ELL
layout pack_csr builds when its rule says it pays, see csrc/kernels/spmm/spmm.h), "slimrt_gather"
(M=1 only: the same matrix packed with SLIMRT_CSR_LAYOUT=csr, i.e. the CSR gather GEMV), "slimrt_codes" (the same matrix
with its values as 4-bit codes into a per-row 16-entry table, as a pruned + shared layer runs),
"dense" (PackedSgemm of the same
matrix with its zeros), "torch_sparse" (torch.sparse_csr_tensor @ x.T, torch.set_num_threads).
All at SLIMRT_BENCH_THREADS (default 2). bench/conftest.py prints each group's ratios
(peer time / slimrt time, > 1: slimrt faster); this file prints the crossover table: the lowest
swept sparsity from which the CSR kernel beats dense fp32, per (K, M).
SLIMRT_BENCH_QUICK=1: K = N = 1024 only, torch_sparse only at 70% and 90%.

Interleaved mode (the figures of reports), without pytest: the kernels alone, engines taking turns block
by block (bench/kernel_timing.py: the binding's own ~2-3 us per call, common to every engine, is left out;
the pytest mode above times the Python calls), ratios to dense fp32 as the median of the per-block ratios
and as the ratio of the fastest blocks:
    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 bench/bench_spmm.py [--threads 1,2] [--kn 1024,4096]
        [--m 1,64] [--sparsity 0.5,0.7,0.8,0.9,0.95] [--blocks 41] [--block-ms 0.5]
"""
import os

import numpy as np
import pytest

from slimrt._native import core

THREADS = int(os.environ.get("SLIMRT_BENCH_THREADS", "2"))
QUICK = bool(os.environ.get("SLIMRT_BENCH_QUICK"))
K = core.kernels
KNS = [1024] if QUICK else [1024, 4096]
MS = [1, 4, 16, 64]
SPARSITIES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
ENGINES = ["slimrt", "slimrt_gather", "slimrt_codes", "dense", "torch_sparse"]

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

_medians = {}


@pytest.fixture(scope="module", autouse=True)
def crossover_report(request):
    yield
    if not _medians:
        return
    lines = []
    for kn in KNS:
        for m in MS:
            row = []
            cross = None
            for s in SPARSITIES:
                a, d = _medians.get((kn, m, s, "slimrt")), _medians.get((kn, m, s, "dense"))
                if a is None or d is None:
                    continue
                row.append(f"{int(s * 100)}%:x{d / a:.2f}")
                if cross is None and d > a:
                    cross = s
            if not row:
                continue
            where = f"{int(cross * 100)}%" if cross is not None else "> swept range"
            lines.append(f"K=N={kn:5d} M={m:3d}  crossover {where:>14}   dense/csr  " + " ".join(row))
    # printed past pytest's output capture (module teardown output is otherwise swallowed)
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\n--- CSR vs dense fp32 crossover (lowest swept sparsity where CSR is faster) ---")
        print("\n".join(lines))


_cache = {}


def operands(kn, m, sparsity):
    key = (kn, m, sparsity)
    if key not in _cache:
        _cache.clear()
        rng = np.random.default_rng(kn + m * 13 + int(sparsity * 100))
        w = rng.standard_normal((kn, kn), dtype=np.float32)
        w *= rng.random((kn, kn), dtype=np.float32) >= sparsity
        x = rng.standard_normal((m, kn), dtype=np.float32)
        mask = w != 0
        indptr = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
        r, c = np.nonzero(mask)
        # the same matrix as 4-bit codes: values snapped to a 16-entry per-row table (slimrt_codes)
        table = np.quantile(np.abs(w[w != 0]), np.linspace(0.02, 0.98, 8)).astype(np.float32) if r.size else \
            np.ones(8, np.float32)
        table = np.concatenate([-table[::-1], table])[None].repeat(kn, 0)
        vals = w[r, c]
        codes = np.abs(vals[:, None] - table[0][None]).argmin(1).astype(np.uint8)
        w[r, c] = table[0][codes]
        _cache[key] = (w, x, indptr, c.astype(np.uint16), w[r, c].copy(), codes, table)
    return _cache[key]


CASES = [(kn, m, s, e) for kn in KNS for m in MS for s in SPARSITIES for e in ENGINES
         if not (e == "torch_sparse" and QUICK and s not in (0.7, 0.9)) and not (e == "slimrt_gather" and m != 1)]


def csr_matrix(kn, indptr, cols, vals, layout=None, **kw):
    """CsrMatrix packed with SLIMRT_CSR_LAYOUT=layout (None: the pack-time rule decides)."""
    old = os.environ.pop("SLIMRT_CSR_LAYOUT", None)
    if layout:
        os.environ["SLIMRT_CSR_LAYOUT"] = layout
    try:
        return K.CsrMatrix(indptr, cols, vals, kn, **kw)
    finally:
        os.environ.pop("SLIMRT_CSR_LAYOUT", None)
        if old is not None:
            os.environ["SLIMRT_CSR_LAYOUT"] = old


@pytest.mark.parametrize("case", CASES, ids=lambda c: "KN%d_M%d_s%02d_%s" % (c[0], c[1], int(c[2] * 100), c[3]))
def test_spmm(benchmark, case):
    kn, m, sparsity, engine = case
    w, x, indptr, cols, vals, codes, table = operands(kn, m, sparsity)
    benchmark.group = f"spmm K=N={kn} M={m} sparsity={int(sparsity * 100)}% threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS, flops=2 * m * vals.size)
    out = np.empty((m, kn), np.float32)
    if engine in ("slimrt", "slimrt_gather"):
        a = csr_matrix(kn, indptr, cols, vals, "csr" if engine == "slimrt_gather" else None)
        y = benchmark(a.run, x, threads=THREADS, out=out)
    elif engine == "slimrt_codes":
        a = csr_matrix(kn, indptr, cols, codes, table=table)
        y = benchmark(a.run, x, threads=THREADS, out=out)
    elif engine == "dense":
        p = K.PackedSgemm(w)
        y = benchmark(p.run, x, threads=THREADS, out=out)
    else:
        if torch is None:
            pytest.skip("torch is not installed")
        torch.set_num_threads(THREADS)
        t = torch.sparse_csr_tensor(torch.from_numpy(indptr.astype(np.int64)),
                                    torch.from_numpy(cols.astype(np.int64)), torch.from_numpy(vals),
                                    size=(kn, kn), check_invariants=False)
        xt = torch.from_numpy(np.ascontiguousarray(x.T))
        y = benchmark(lambda: t @ xt).numpy().T
    st = benchmark.stats.stats if hasattr(benchmark.stats, "stats") else benchmark.stats
    _medians[(kn, m, sparsity, engine)] = st.median
    ref = x[:1].astype(np.float64) @ w.T.astype(np.float64)
    assert np.allclose(y[:1], ref, rtol=1e-3, atol=1e-3 * np.sqrt(kn))


def interleaved(kns, ms, sparsities, threads_list, blocks, block_ms=0.5):
    """The kernels alone, engines taking turns block by block (kernel_timing.py); prints the ratios
    to dense fp32: the median of the per-block ratios and (min) the ratio of the fastest blocks."""
    from kernel_timing import interleave, ratio
    print("dense/engine (> 1: faster than slimrt dense fp32): median of %d per-block ratios (ratio of minima)"
          % blocks)
    for threads in threads_list:
        for kn in kns:
            for m in ms:
                cross = None
                for sp in sparsities:
                    w, x, indptr, cols, vals, codes, table = operands(kn, m, sp)
                    out = np.empty((m, kn), np.float32)
                    mats = {"slimrt": csr_matrix(kn, indptr, cols, vals),
                            "slimrt_codes": csr_matrix(kn, indptr, cols, codes, table=table),
                            "dense": K.PackedSgemm(w)}
                    if m == 1:
                        mats["slimrt_gather"] = csr_matrix(kn, indptr, cols, vals, "csr")
                    times = interleave({e: (lambda r, a=a: a.run(x, threads=threads, out=out, repeat=r))
                                        for e, a in mats.items()}, blocks, block_ms)
                    r = {e: ratio(times, "dense", e) for e in mats}
                    if cross is None and r["slimrt"][0] > 1:
                        cross = sp
                    fmt = lambda e: "x%.2f (min x%.2f)" % r[e]  # noqa: E731
                    d = times["dense"]
                    extra = "  gather " + fmt("slimrt_gather") if "slimrt_gather" in r else ""
                    print("threads=%d K=N=%d M=%d sparsity=%.2f  dense %8.1f us (min %.1f)  slimrt %s  codes %s%s"
                          % (threads, kn, m, sp, np.median(d) * 1e6, d.min() * 1e6, fmt("slimrt"),
                             fmt("slimrt_codes"), extra), flush=True)
                print("threads=%d K=N=%d M=%d  crossover (lowest swept sparsity where CSR beats dense): %s"
                      % (threads, kn, m, "%d%%" % int(cross * 100) if cross is not None else "> swept range"))


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    lst = lambda t: (lambda v: [t(a) for a in v.split(",")])  # noqa: E731
    ap.add_argument("--threads", type=lst(int), default=[1, 2])
    ap.add_argument("--kn", type=lst(int), default=[1024, 4096])
    ap.add_argument("--m", type=lst(int), default=[1, 64])
    ap.add_argument("--sparsity", type=lst(float), default=[0.5, 0.7, 0.8, 0.9, 0.95])
    ap.add_argument("--blocks", type=int, default=41)
    ap.add_argument("--block-ms", type=float, default=0.5, help="milliseconds per engine per block")
    a = ap.parse_args()
    interleaved(a.kn, a.m, a.sparsity, a.threads, a.blocks, a.block_ms)

"""End-to-end speed of slimrt against ONNX Runtime and PyTorch on six models (issue 5).

    SLIMRT_DEV_CORE=$(ls build/e2e/_core*.so) PYTHONPATH=python:bench python3 -m pytest bench/bench_models.py \\
        --benchmark-only --benchmark-min-rounds=3 --benchmark-max-time=0.5 --benchmark-json=/tmp/e2e.json -q
    python3 bench/compare.py /tmp/e2e.json

One benchmark per (model, threads, batch, engine); the engines of one (model, threads, batch) run back to
back, so a load spike of the shared machine hits neighbours alike. Engines and models: ``bench/models.py``.

* batch 1: latency per call; the JSON's extra_info holds p50 / p95 (ms) of the single-call timings.
* batch ``Spec.batch_big`` (64; 16 for the 224x224 MobileNetV2 and the transformer): throughput (samples/s).
* threads 1 and 2 (``SLIMRT_BENCH_THREADS="1,2"``); every engine pinned to the same count.

Rounds: each timed call is one round (iterations=1, so p95 is a per-call figure); after one warm-up call
the number of rounds is ``--benchmark-max-time`` / (time of the warm-up), at least ``--benchmark-min-rounds``
and at most 1000.

Correctness, before timing: every engine's output on a batch-2 input is compared with torch fp32
(max |got - want| / max |want|): < 1e-3 for fp32 engines, < 0.1 for int8 ones, else the test FAILS.

``SLIMRT_BENCH_QUICK=1``: a smoke run (mlp, lenet5, transformer; threads 1; batch 1 and 8; 0.1 s).
``SLIMRT_BENCH_MODELS=resnet18,xception`` / ``SLIMRT_BENCH_ENGINES=...``: a subset.
"""
import os
import time

# numpy is no engine here: its OpenBLAS threads, once woken by any BLAS call in the harness, spin on the
# second core after it and slow the next 2-thread engine (Xception static int8, 2 threads: 3.2 vs 1.9 ms).
# Set before numpy loads OpenBLAS; a value given in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest

import models as M

QUICK = bool(os.environ.get("SLIMRT_BENCH_QUICK"))
_default_models = "mlp,lenet5,transformer" if QUICK else ",".join(M.MODELS)
MODELS = [m for m in os.environ.get("SLIMRT_BENCH_MODELS", _default_models).split(",") if m]
THREADS = [int(t) for t in os.environ.get("SLIMRT_BENCH_THREADS", "1" if QUICK else "1,2").split(",")]
ENGINES = [e for e in os.environ.get("SLIMRT_BENCH_ENGINES", ",".join(M.ENGINES)).split(",") if e]


def _cases():
    out = []
    for model in MODELS:
        for threads in THREADS:
            for batch in ("1", "big"):
                for engine in ENGINES:
                    if engine == "ort_fp32_spin" and threads == 1:
                        continue  # no worker threads to spin
                    out.append(pytest.param(model, threads, batch, engine,
                                            id=f"{model}-t{threads}-b{batch}-{engine}"))
    return out


_runners = {}
_checked = {}


def _runner(engine, model, threads):
    key = (engine, model, threads)
    if key not in _runners:
        if any(k[1] != model for k in _runners):  # one model's sessions at a time
            _runners.clear()
        _runners[key] = M.make_runner(engine, model, threads)
    return _runners[key]


def _check(engine, model, threads, run):
    """Fails loudly when the engine's output differs from torch fp32 by more than its tolerance."""
    key = (engine, model, threads)
    if key not in _checked:
        x = M.spec(model).input(2, seed=7)
        err = M.rel_error(run(x), M.reference(model, x))
        _checked[key] = err
        if not err <= M.TOL[engine]:
            pytest.fail(f"{engine} on {model} (threads={threads}): max rel error {err:.3e} vs torch fp32 "
                        f"> {M.TOL[engine]:g}", pytrace=False)
    return _checked[key]


@pytest.mark.parametrize("model,threads,batch,engine", _cases())
def test_e2e(benchmark, request, model, threads, batch, engine):
    spec = M.spec(model)
    n = 1 if batch == "1" else (8 if QUICK else spec.batch_big)
    try:
        run = _runner(engine, model, threads)
    except ImportError as e:
        pytest.skip(f"{engine}: {e}")
    err = _check(engine, model, threads, run)
    x = spec.input(n)
    t0 = time.perf_counter()
    y = run(x)  # warm-up (also sizes slimrt's per-shape plan)
    t_warm = time.perf_counter() - t0
    assert y.shape[0] == n
    cfg = request.config
    max_time = 0.1 if QUICK else float(cfg.getoption("benchmark_max_time", 0.5) or 0.5)
    min_rounds = int(cfg.getoption("benchmark_min_rounds", 3) or 3)
    rounds = int(min(1000, max(min_rounds, max_time / max(t_warm, 1e-6))))

    benchmark.group = f"{model} batch={n} threads={threads}"
    benchmark.extra_info.update(engine=engine, model=model, batch=n, threads=threads, flops=M.flops(spec) * n,
                                rel_error=err, mode="latency" if n == 1 else "throughput")
    benchmark.pedantic(run, args=(x,), rounds=rounds, iterations=1, warmup_rounds=1)
    data = np.asarray(benchmark.stats.stats.data)
    benchmark.extra_info.update(p50_ms=float(np.percentile(data, 50) * 1e3),
                                p95_ms=float(np.percentile(data, 95) * 1e3),
                                samples_per_s=float(n / np.median(data)))
    note = M.note_for(model, engine)
    if note:
        benchmark.extra_info["note"] = note

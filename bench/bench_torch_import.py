"""Cost of ``slimrt.from_torch`` and speed of the converted models, against peers measured in the same run.

    SLIMRT_DEV_CORE=... PYTHONPATH=python:tests python3 -m pytest bench/bench_torch_import.py \
        --benchmark-only --benchmark-group-by=group --benchmark-columns=median,min,rounds

* ``convert <arch>``: ``from_torch`` (trace + convert) against ``torch.export.export`` alone (the
  tracing step it is built on, a lower bound) and ``torch.jit.trace`` (TorchScript's tracer).
* ``infer <arch> batch=<n>``: the converted model on ``slimrt.Session`` against the module in
  torch eager mode; skipped while the native runtime cannot load models. Both pinned to
  SLIMRT_BENCH_THREADS threads (default 1).
"""
import os
import warnings

import numpy as np
import pytest
import torch

import slimrt

import torch_models as TM

THREADS = int(os.environ.get("SLIMRT_BENCH_THREADS", "1"))
torch.set_num_threads(THREADS)
ARCHS = ["mlp", "lenet5", "resnet", "mobilenetv2", "transformer"]


def _example(arch, batch):
    module, make = TM.ARCHITECTURES[arch](seed=0)
    x = make(np.random.default_rng(0), batch)
    return module, x


@pytest.mark.parametrize("engine", ["slimrt", "torch.export", "torch.jit.trace"])
@pytest.mark.parametrize("arch", ARCHS)
def test_convert(benchmark, arch, engine):
    module, x = _example(arch, 2)
    xt = torch.from_numpy(x)
    benchmark.group = f"convert {arch}"
    benchmark.extra_info.update(engine=engine)
    if engine == "slimrt":
        fn = lambda: slimrt.from_torch(module, xt)  # noqa: E731
    elif engine == "torch.export":
        fn = lambda: torch.export.export(module, (xt,), strict=False)  # noqa: E731
    else:
        def fn():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.jit.trace(module, (xt,), check_trace=False)
    benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)


def _session(model):
    try:
        return slimrt.Session(model, threads=THREADS)
    except (ImportError, slimrt.Error) as e:  # the runtime cannot load models yet
        pytest.skip(f"slimrt.Session unavailable: {type(e).__name__}: {e}")


@pytest.mark.parametrize("engine", ["slimrt", "torch"])
@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("arch", ARCHS)
def test_infer(benchmark, arch, batch, engine):
    module, x = _example(arch, batch)
    benchmark.group = f"infer {arch} batch={batch} threads={THREADS}"
    benchmark.extra_info.update(engine=engine, threads=THREADS)
    if engine == "slimrt":
        sess = _session(slimrt.from_torch(module, torch.from_numpy(x)).optimize())
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        got = sess.run(x)[0]
        assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))
        benchmark(sess.run, x)
    else:
        xt = torch.from_numpy(x)

        def fn():
            with torch.inference_mode():
                return module(xt)

        benchmark(fn)

"""Latency of each width of a slimmable model, against the full width and against PyTorch at that width.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_widths.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=min,median,iqr,rounds

Workload: the bundled Fashion-MNIST CNN (python/slimrt/data/fashion_cnn.keras, conv32-conv64-dense128)
made slimmable with ``slimrt.slim`` (widths 1.0 / 0.75 / 0.5 / 0.25, BN recalibrated on 128 images),
batch 1 and 32. One group per (batch, width); engines:

* ``slimrt``: a Session on ``extract_width(model, w)`` (the width as a plain model);
* ``slimrt_multi``: the one multi-width Session with ``run(x, width=w)`` (only once the runtime
  supports widths; skipped otherwise);
* ``full_width``: a Session on the original model -- the ratio printed by bench/conftest.py is then
  the speed-up the width buys;
* ``torch``: the same width's network in PyTorch (channels_last, BN folded by hand), same threads.

Every engine is pinned to SLIMRT_BENCH_THREADS threads (default 1: serving one request per core).
"""
import json
import os

THREADS = int(os.environ.get("SLIMRT_BENCH_THREADS", "1"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import slimrt  # noqa: E402
from slimrt.slimmable import extract_width, slim, widths_of  # noqa: E402

DATA = os.path.join(os.path.dirname(slimrt.__file__), "data")
WIDTHS = (1.0, 0.75, 0.5, 0.25)
BATCHES = (1, 32)


@pytest.fixture(scope="module")
def slimmed():
    model = slimrt.from_keras(os.path.join(DATA, "fashion_cnn.keras"))
    calib = np.load(os.path.join(DATA, "fashion_calib1000.npz"))["x"][:128].astype(np.float32)[..., None]
    sm = slim(model, WIDTHS, calib=calib)
    return model, sm


def _input(batch):
    x = np.load(os.path.join(DATA, "fashion_test500.npz"))["x"][:batch].astype(np.float32)[..., None]
    return np.ascontiguousarray(x)


def _macs(sm, w):
    return next(e["macs"] for e in widths_of(sm) if e["width"] == w)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("w", WIDTHS)
def test_slimrt_width(benchmark, slimmed, w, batch):
    _, sm = slimmed
    sess = slimrt.Session(extract_width(sm, w), threads=THREADS)
    x = _input(batch)
    sess.run(x)
    benchmark.group = f"fashion_cnn b{batch} w{int(w * 100)}"
    benchmark.extra_info.update(engine="slimrt", flops=2 * _macs(sm, w) * batch, width=w)
    benchmark(sess.run, x)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("w", WIDTHS)
def test_slimrt_multi_width(benchmark, slimmed, w, batch):
    _, sm = slimmed
    sess = slimrt.Session(sm, threads=THREADS)
    x = _input(batch)
    try:
        sess.run(x, width=w)
    except TypeError:
        pytest.skip("Session.run(x, width=...) is not available yet")
    benchmark.group = f"fashion_cnn b{batch} w{int(w * 100)}"
    benchmark.extra_info.update(engine="slimrt_multi", flops=2 * _macs(sm, w) * batch, width=w)
    benchmark(lambda: sess.run(x, width=w))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("w", WIDTHS[1:])
def test_full_width(benchmark, slimmed, w, batch):
    model, sm = slimmed
    sess = slimrt.Session(model, threads=THREADS)
    x = _input(batch)
    sess.run(x)
    benchmark.group = f"fashion_cnn b{batch} w{int(w * 100)}"
    benchmark.extra_info.update(engine="full_width", flops=2 * _macs(sm, 1.0) * batch)
    benchmark(sess.run, x)


def _torch_net(plain):
    """The width's plain model as torch functional calls (BN folded; NHWC input -> channels_last)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    C = {k: t.to_dense().astype(np.float32) for k, t in plain.constants.items()}
    steps = list(plain.nodes)
    convs = {}
    for n in steps:
        if n.op == "conv2d":
            w = torch.from_numpy(C[n.inputs[1]]).permute(0, 3, 1, 2).contiguous()
            convs[n.name] = [w.to(memory_format=torch.channels_last), None]
    by_out = {n.outputs[0]: n for n in steps}
    for n in steps:  # fold conv -> batch_norm
        if n.op == "batch_norm" and by_out.get(n.inputs[0]) is not None and by_out[n.inputs[0]].op == "conv2d":
            g, b, m, v = (C[i].astype(np.float64) for i in n.inputs[1:5])
            s = g / np.sqrt(v + n.attr("epsilon"))
            cv = convs[by_out[n.inputs[0]].name]
            cv[0] = (cv[0] * torch.from_numpy(s.astype(np.float32))[:, None, None, None]).contiguous(
                memory_format=torch.channels_last)
            cv[1] = torch.from_numpy((b - m * s).astype(np.float32))
    dense = {n.name: (torch.from_numpy(C[n.inputs[1]]), torch.from_numpy(C[n.inputs[2]])) for n in steps
             if n.op == "dense"}
    scale = float(C[next(n for n in steps if n.op == "mul").inputs[1]].ravel()[0])

    def run(x):
        y = x.permute(0, 3, 1, 2) * scale
        for n in steps:
            if n.op == "conv2d":
                w, b = convs[n.name]
                y = torch.relu(F.conv2d(y, w, b, padding=1))
            elif n.op == "max_pool":
                y = F.max_pool2d(y, 2)
            elif n.op == "flatten":
                y = y.permute(0, 2, 3, 1).flatten(1)  # slimrt flattens NHWC
            elif n.op == "dense":
                w, b = dense[n.name]
                y = F.linear(y, w, b)
                if n.attr("act") == "relu":
                    y = torch.relu(y)
        return y

    return torch, run


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("w", WIDTHS)
def test_torch_width(benchmark, slimmed, w, batch):
    _, sm = slimmed
    plain = extract_width(sm, w)
    torch, run = _torch_net(plain)
    torch.set_num_threads(THREADS)
    x = _input(batch)
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        got = run(xt).numpy()
    want = plain.run_reference(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    benchmark.group = f"fashion_cnn b{batch} w{int(w * 100)}"
    benchmark.extra_info.update(engine="torch", flops=2 * _macs(sm, w) * batch, width=w)

    def call():
        with torch.inference_mode():
            return run(xt)

    benchmark(call)


def test_width_table(slimmed):
    """Prints MACs / bytes per width (not timed)."""
    _, sm = slimmed
    print("\n" + json.dumps(widths_of(sm), indent=1))

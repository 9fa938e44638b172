"""``slimrt demo``: the main job on the bundled model, with no arguments.

The bundled model is a small CNN trained on Fashion-MNIST by
``scripts/train_demo_model.py`` and saved as a real Keras ``.keras`` file; 500
real test images come with it. The demo converts it, saves the ``.slim`` file,
loads it back in the C++ runtime, and prints accuracy and latency.
"""
from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np

DATA = pathlib.Path(__file__).resolve().parent / "data"
MODEL = DATA / "fashion_cnn.keras"
SAMPLES = DATA / "fashion_test500.npz"
CALIB = DATA / "fashion_calib1000.npz"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]


def load_samples(path=SAMPLES):
    with np.load(path, allow_pickle=False) as d:
        return d["x"][..., None].astype(np.float32), d["y"].astype(np.int64)


def accuracy(sess, x, y, batch=100):
    preds = []
    for i in range(0, len(x), batch):
        preds.append(np.argmax(sess.run(x[i:i + batch])[0], axis=1))
    return float(np.mean(np.concatenate(preds) == y))


def measure(sess, x, seconds):
    from .cli import latency_stats, time_session

    b1 = latency_stats(time_session(sess, x[:1], seconds=seconds))
    b64 = latency_stats(time_session(sess, x[:64], seconds=seconds))
    return b1, b64


# (label, compress() keyword arguments); None = the fp32 model as converted.
RECIPES = [
    ("fp32", None),
    ("int8 (per-channel weights)", dict(quant="int8")),
    ("int8 static (calibrated)", dict(quant="int8", calib=CALIB)),
    ("log2 4-bit", dict(quant="log2")),
    ("codebook 4-bit (k-means)", dict(share=16, share_mode="per_channel")),
    ("prune 80% dense + codebook 4-bit", dict(share=16, share_mode="per_channel", per_layer={"dense": {"prune": 0.8}})),
    ("prune 92% dense + codebook 4-bit", dict(share=16, share_mode="per_channel", per_layer={"dense": {"prune": 0.92}})),
]


def weight_bytes(model):
    return sum(t.nbytes for t in model.constants.values())


def run(threads=None, quick=False, out=print, recipes=RECIPES, tune=True):
    import slimrt

    seconds = 0.3 if quick else 1.5
    x, y = load_samples()
    info = slimrt.cpu_info()
    out(f"slimrt {slimrt.__version__} on {info['brand'] or 'x86-64'} (kernels: {info['isa']})")
    out(f"model: {MODEL.name} (Keras 3, trained on Fashion-MNIST), {len(x)} real test images")
    model = slimrt.from_keras(MODEL)
    out(f"converted: {len(model.nodes)} nodes, {len(model.constants)} tensors -> optimized: "
        f"{len(model.optimize().nodes)} nodes")
    fp32_bytes = None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, recipe in recipes:
            if recipe is not None and recipe.get("calib") is CALIB:  # 200 of the bundled calibration images
                recipe = dict(recipe, calib=load_samples(CALIB)[0][:200])
            # optimize() after compress: with calibration data its int8_chain pass keeps activations uint8
            m = model.optimize() if recipe is None else model.compress(seed=0, **recipe).optimize()
            path = os.path.join(tmp, "model.slim")
            m.save(path, optimize=False)  # convert -> save -> load -> run
            sess = slimrt.Session(path, threads=threads, tune=tune)
            wb = weight_bytes(m)
            fp32_bytes = fp32_bytes or wb
            acc = accuracy(sess, x, y)
            b1, b64 = measure(sess, x, seconds)
            rows.append(dict(recipe=label, bytes=wb, file_bytes=os.path.getsize(path), ratio=fp32_bytes / wb,
                             accuracy=acc, b1=b1["p50"], b64=b64["p50"],
                             kernels=sorted({k for _, op, k in sess.kernels(x[:64].shape)
                                             if op in ("dense", "conv2d", "qdense", "qconv2d")})))
    out("")
    out(f"| {'recipe':34s} | {'weight bytes':>12s} | {'ratio':>6s} | {'accuracy':>8s} | {'b=1 p50 ms':>10s} | "
        f"{'b=64 p50 ms':>11s} | kernels")
    out(f"|{'-' * 36}|{'-' * 14}|{'-' * 8}|{'-' * 10}|{'-' * 12}|{'-' * 13}|---------")
    for r in rows:
        out(f"| {r['recipe']:34s} | {r['bytes']:>12d} | {r['ratio']:>5.1f}x | {r['accuracy'] * 100:>7.1f}% | "
            f"{r['b1']:>10.3f} | {r['b64']:>11.3f} | {', '.join(r['kernels'])}")
    out("")
    out(f"threads: {sess.threads}; accuracy on the {len(x)} bundled test images; latency = median of repeated runs; "
        f"{'tuned plans (each compressed layer keeps its native kernel unless fp32 measured faster; kernels listed for batch 64)' if tune else 'native kernels'}")
    return rows

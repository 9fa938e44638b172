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


def run(threads=None, quick=False, out=print):
    import slimrt

    seconds = 0.5 if quick else 2.0
    x, y = load_samples()
    out(f"slimrt {slimrt.__version__} on {slimrt.cpu_info()['brand'] or 'x86-64'} "
        f"(kernels: {slimrt.cpu_info()['isa']})")
    out(f"model: {MODEL.name} (Keras 3, Fashion-MNIST), {len(x)} real test images")
    model = slimrt.from_keras(MODEL)
    out(f"converted: {len(model.nodes)} nodes, {len(model.constants)} weight tensors")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fashion_cnn.slim")
        model.save(path)
        size = os.path.getsize(path)
        sess = slimrt.Session(path, threads=threads)
        acc = accuracy(sess, x, y)
        b1, b64 = measure(sess, x, seconds)
    out(f"saved {size} bytes, loaded with {sess.threads} threads")
    out("")
    out(f"| {'model':24s} | {'bytes':>9s} | {'accuracy':>8s} | {'batch 1 p50 ms':>14s} | {'batch 64 p50 ms':>15s} |")
    out(f"|{'-' * 26}|{'-' * 11}|{'-' * 10}|{'-' * 16}|{'-' * 17}|")
    out(f"| {'fp32':24s} | {size:>9d} | {acc * 100:>7.1f}% | {b1['p50']:>14.3f} | {b64['p50']:>15.3f} |")
    pred = np.argmax(sess.run(x[:5])[0], axis=1)
    out("")
    out("first five test images: " + ", ".join(f"{CLASSES[p]} (true: {CLASSES[t]})" for p, t in zip(pred, y[:5])))
    return dict(accuracy=acc, bytes=size, b1=b1, b64=b64)

"""Trains the demo model bundled with slimrt (python/slimrt/data/).

A small CNN on Fashion-MNIST (Debian package `dataset-fashion-mnist`), trained
with Keras 3 on the torch backend and saved as a real `.keras` file, plus 500
real test images and labels. `slimrt demo` converts, compresses and runs it.

    apt-get install dataset-fashion-mnist
    pip install torch==2.13.0 keras h5py
    python scripts/train_demo_model.py
"""
import gzip
import os
import pathlib
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

DATA = pathlib.Path("/usr/share/datasets/fashion-mnist")
OUT = pathlib.Path(__file__).resolve().parent.parent / "python" / "slimrt" / "data"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load():
    xtr = read_idx(DATA / "train-images-idx3-ubyte.gz")
    ytr = read_idx(DATA / "train-labels-idx1-ubyte.gz")
    xte = read_idx(DATA / "t10k-images-idx3-ubyte.gz")
    yte = read_idx(DATA / "t10k-labels-idx1-ubyte.gz")
    return xtr, ytr, xte, yte


def build():
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Rescaling(1 / 255.0),
        layers.Conv2D(32, 3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(10),
    ], name="fashion_cnn")


def main(epochs=int(sys.argv[1]) if len(sys.argv) > 1 else 4):
    import keras

    keras.utils.set_random_seed(0)
    xtr, ytr, xte, yte = load()
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(xtr[..., None].astype("float32"), ytr, batch_size=128, epochs=epochs, verbose=2,
              validation_split=0.05)
    _, acc = model.evaluate(xte[..., None].astype("float32"), yte, verbose=0)
    print(f"test accuracy (10000 images): {acc:.4f}")
    OUT.mkdir(parents=True, exist_ok=True)
    model.save(OUT / "fashion_cnn.keras")
    # 500 real test images (the last 500 of the test set), for the demo and the accuracy tests.
    np.savez_compressed(OUT / "fashion_test500.npz", x=xte[-500:], y=yte[-500:])
    # 1000 training images for calibration (int8 activations, k-means checks).
    np.savez_compressed(OUT / "fashion_calib1000.npz", x=xtr[:1000], y=ytr[:1000])
    print("saved to", OUT)


if __name__ == "__main__":
    main()

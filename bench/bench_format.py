"""Speed of the .slim loader's integrity checks and of loading, against peers in the same run.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_format.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=min,median,iqr,rounds

* crc32 over 64 MiB: the C++ slicing-by-8 CRC (core.crc32) vs Python's zlib.crc32 (zlib 1.2.13,
  braided). Single-threaded both.
* validating a 64 MiB model (16 dense float32 tensors of 4 MiB): core.validate_model_file (mmap,
  every CRC, every check, no copy) vs torch.load(weights_only=True, mmap=True) of the same tensors
  saved by torch.save (which reads the zip index, checks no CRC and leaves the data mapped), and
  vs numpy.load of the same tensors as an uncompressed .npz (reads and copies every byte).
  Page cache is warm for all of them (each file is read once before timing).
"""
import os
import zlib

import numpy as np
import pytest

from slimrt import slimfile
from slimrt._native import core
from slimrt.ir import Model

MB = 1 << 20


@pytest.fixture(scope="module")
def blob():
    return np.random.default_rng(0).integers(0, 256, 64 * MB, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("engine", ["slimrt", "zlib"])
def test_crc32(benchmark, blob, engine):
    benchmark.group = "crc32 64MiB"
    benchmark.extra_info["engine"] = engine
    fn = core.crc32 if engine == "slimrt" else zlib.crc32
    assert fn(blob) == zlib.crc32(blob)
    benchmark(fn, blob)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(1)
    tensors = {f"w{i}": rng.standard_normal((1024, 1024)).astype(np.float32) for i in range(16)}
    m = Model(inputs=[("x", (None, 3))], constants=tensors)
    m.outputs = list(tensors)
    paths = {"slimrt": str(d / "m.slim"), "npz": str(d / "m.npz")}
    slimfile.save(m, paths["slimrt"])
    np.savez(paths["npz"], **tensors)
    try:
        import torch

        paths["torch"] = str(d / "m.pt")
        torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, paths["torch"])
    except ImportError:  # pragma: no cover
        pass
    for p in paths.values():  # warm the page cache
        with open(p, "rb") as f:
            while f.read(16 * MB):
                pass
    return paths


def _np_load_all(path):
    with np.load(path) as z:
        return [z[k] for k in z.files]


@pytest.mark.parametrize("engine", ["slimrt", "torch", "npz"])
def test_validate_model(benchmark, model_files, engine):
    benchmark.group = "load+validate 64MiB model"
    benchmark.extra_info["engine"] = engine
    if engine not in model_files:
        pytest.skip("torch is not installed")
    path = model_files[engine]
    if engine == "slimrt":
        benchmark(core.validate_model_file, path)
    elif engine == "torch":
        import torch

        benchmark(lambda: torch.load(path, weights_only=True, mmap=True))
    else:
        benchmark(_np_load_all, path)

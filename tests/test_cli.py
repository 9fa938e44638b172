"""The command line, through subprocess, on the bundled model and a converted one."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import slimrt
from slimrt import demo


def cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "slimrt", *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"slimrt {args} failed ({r.returncode}): {r.stderr}")
    return r


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "fashion.slim"
    cli("convert", demo.MODEL, "-o", path)
    return path


def test_convert_inspect_run(converted, tmp_path):
    r = cli("inspect", converted)
    assert "conv2d" in r.stdout and "total tensor bytes" in r.stdout
    info = json.loads(cli("inspect", converted, "--json").stdout)
    assert info["inputs"][0]["shape"] == [None, 28, 28, 1]
    assert info["total_bytes"] > 100_000
    x, y = demo.load_samples()
    np.save(tmp_path / "x.npy", x[:32])
    cli("run", converted, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    out = np.load(tmp_path / "y.npy")
    want = slimrt.Session(str(converted)).run(x[:32])[0]
    np.testing.assert_array_equal(out, want)
    assert np.mean(np.argmax(out, 1) == y[:32]) > 0.8


def test_bench_json(converted):
    r = cli("bench", converted, "--batch", "4", "--seconds", "0.2", "--json")
    st = json.loads(r.stdout)
    assert st["batch"] == 4 and st["p50"] > 0 and st["p99"] >= st["p50"] and st["throughput"] > 0
    assert "profile" not in st


def test_bench_profile(converted):
    """--profile lists the N slowest nodes with the kernel each runs (text and JSON)."""
    r = cli("bench", converted, "--seconds", "0.2", "--profile", "3")
    assert "per node" in r.stdout and "conv2d" in r.stdout
    st = json.loads(cli("bench", converted, "--seconds", "0.2", "--profile", "2", "--json").stdout)
    rows = st["profile"]
    assert len(rows) == 2 and rows[0]["ms"] >= rows[1]["ms"] > 0
    assert {"node", "op", "kernel", "pct"} <= set(rows[0])


def test_demo_runs():
    r = cli("demo", "--quick")
    assert "accuracy" in r.stdout and "fp32" in r.stdout


def test_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.slim"
    bad.write_bytes(b"not a model")
    r = cli("inspect", bad, check=False)
    assert r.returncode == 2 and r.stderr.startswith("slimrt: error:") and r.stderr.count("\n") == 1
    r = cli("run", tmp_path / "missing.slim", "--input", "x.npy", check=False)
    assert r.returncode == 2 and "slimrt: error:" in r.stderr
    r = cli("convert", tmp_path / "x.txt", "-o", tmp_path / "o.slim", check=False)
    assert r.returncode == 2 and "don't know how to read" in r.stderr
    assert not (tmp_path / "o.slim").exists()


def test_compress_and_slim(converted, tmp_path):
    x, y = demo.load_samples()
    np.save(tmp_path / "calib.npy", x[:64])
    r = cli("compress", converted, "-o", tmp_path / "q.slim", "--quant", "int8", "--calib", tmp_path / "calib.npy",
            "--quiet")
    assert "int8" in r.stdout and (tmp_path / "q.slim").exists()
    q = slimrt.Session(str(tmp_path / "q.slim"))
    assert any("q8" in k for _, _, k in q.kernels())
    assert np.mean(np.argmax(q.run(x[:200])[0], 1) == y[:200]) > 0.8
    np.savez(tmp_path / "eval.npz", x=x[:100], y=y[:100])
    r = cli("slim", converted, "-o", tmp_path / "w.slim", "--widths", "1,0.5", "--calib", tmp_path / "calib.npy",
            "--eval", tmp_path / "eval.npz", "--quiet")
    assert "| 1.00 |" in r.stdout and "| 0.50 |" in r.stdout
    s = slimrt.Session(str(tmp_path / "w.slim"))
    assert s.widths == [1.0, 0.5]
    s.run(x[:4], width=0.5)
    assert s.width == 0.5


@pytest.mark.parametrize("cmd", ["convert", "inspect", "run", "bench", "demo", "compress", "slim"])
def test_help(cmd):
    assert "usage:" in cli(cmd, "--help").stdout


def test_convert_torch_factory_with_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    (tmp_path / "mynet.py").write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),\n"
        "                               torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 5))\n")
    import importlib.util

    spec = importlib.util.spec_from_file_location("mynet", tmp_path / "mynet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = mod.make().eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    r = subprocess.run([sys.executable, "-m", "slimrt", "convert", "mynet:make", "--state-dict", "w.pt",
                        "--input-shape", "1,3,8,8", "-o", "m.slim"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    got = slimrt.Session(str(tmp_path / "m.slim")).run(x)[0]
    want = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # a state dict that is not one is refused with one line
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    r = subprocess.run([sys.executable, "-m", "slimrt", "convert", "mynet:make", "--state-dict", "bad.pt",
                        "--input-shape", "1,3,8,8", "-o", "b.slim"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("slimrt: error:")

"""The C API from a real C++ app: build examples/cpp against the installed package, run it, compare with Python."""
import os
import shutil
import subprocess

import numpy as np
import pytest

import slimrt
from slimrt import Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _installed():
    return os.path.exists(slimrt.get_library()) and os.path.exists(
        os.path.join(slimrt.get_cmake_dir(), "slimrtConfig.cmake"))


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_cpp_example_matches_python(tmp_path, rng):
    if not _installed():
        pytest.skip("slimrt is not installed as a wheel (editable dev build): no lib/ and cmake/ dirs")
    m = Model(inputs=[("x", (None, 6, 6, 2))])
    y = m.add_node("conv2d", ["x", m.add_constant("w", rng.standard_normal((4, 3, 3, 2)).astype(np.float32))],
                   dict(pads=[1, 1, 1, 1], act="relu"))
    y = m.add_node("flatten", [m.add_node("global_avg_pool", [y])])
    m.outputs = [m.add_node("softmax", [m.add_node("dense", [y, m.add_constant("d", rng.standard_normal((3, 4)).astype(np.float32))])])]
    path = str(tmp_path / "m.slim")
    m.save(path)
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    x.tofile(tmp_path / "x.f32")
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", os.path.join(ROOT, "examples", "cpp"), "-B", str(build),
                    f"-DCMAKE_PREFIX_PATH={slimrt.get_cmake_dir()}"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    out = subprocess.run([str(build / "slimrt_example"), path, str(tmp_path / "x.f32"), "2", "6", "6", "2"],
                         check=True, capture_output=True, text=True).stdout.split("\n")
    assert out[0] == "output " + m.outputs[0] + " shape 2 3"
    got = np.array([float(v) for v in out[1:] if v]).reshape(2, 3)
    want = slimrt.Session(path).run(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # A damaged file gives a status + message, not a crash.
    (tmp_path / "bad.slim").write_bytes(b"SLIM" + b"\0" * 100)
    r = subprocess.run([str(build / "slimrt_example"), str(tmp_path / "bad.slim"), str(tmp_path / "x.f32"), "2", "6",
                        "6", "2"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("load: ")

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


def test_c_api_widths_through_ctypes(tmp_path, rng):
    """slimrt_session_widths / slimrt_session_run_width on a slimmable model, called from C (ctypes)."""
    import ctypes as C

    if not _installed():
        pytest.skip("slimrt is not installed as a wheel (editable dev build)")
    m = Model(inputs=[("x", (None, 6))])
    h = m.add_node("dense", ["x", m.add_constant("w1", rng.standard_normal((8, 6)).astype(np.float32))],
                   dict(act="relu"))
    m.outputs = [m.add_node("dense", [h, m.add_constant("w2", rng.standard_normal((3, 8)).astype(np.float32))])]
    wide = m.slim(widths=[1.0, 0.5])
    path = str(tmp_path / "w.slim")
    wide.save(path)
    lib = C.CDLL(slimrt.get_library())

    class Options(C.Structure):
        _fields_ = [("threads", C.c_int32), ("isa", C.c_char_p), ("latency_target_ms", C.c_double),
                    ("percentile", C.c_double), ("min_width", C.c_double), ("tune", C.c_int32),
                    ("reserved", C.c_int32 * 8)]

    class TensorT(C.Structure):
        _fields_ = [("data", C.c_void_p), ("dtype", C.c_int), ("ndim", C.c_int32), ("dims", C.POINTER(C.c_int64))]

    class OutputT(C.Structure):
        _fields_ = [("data", C.c_void_p), ("capacity", C.c_size_t), ("dtype", C.c_int), ("ndim", C.c_int32),
                    ("dims", C.c_int64 * 8)]

    lib.slimrt_last_error.restype = C.c_char_p
    model, sess = C.c_void_p(), C.c_void_p()
    assert lib.slimrt_model_load(path.encode(), C.byref(model)) == 0, lib.slimrt_last_error()
    opt = Options()
    lib.slimrt_session_options_init(C.byref(opt))
    opt.threads = 1
    assert lib.slimrt_session_create(model, C.byref(opt), C.byref(sess)) == 0, lib.slimrt_last_error()
    n = C.c_int32(0)
    assert lib.slimrt_session_widths(sess, None, C.byref(n)) == 0 and n.value == 2
    ws = (C.c_double * 2)()
    assert lib.slimrt_session_widths(sess, ws, C.byref(n)) == 0 and list(ws) == [1.0, 0.5]
    x = rng.standard_normal((4, 6)).astype(np.float32)
    dims = (C.c_int64 * 2)(4, 6)
    t = TensorT(x.ctypes.data, 1, 2, dims)
    y = np.zeros((4, 3), np.float32)
    o = OutputT(y.ctypes.data, y.nbytes)
    used = C.c_double(0)
    assert lib.slimrt_session_run_width(sess, C.c_double(0.5), C.byref(t), 1, C.byref(o), 1, C.byref(used)) == 0
    assert used.value == 0.5 and list(o.dims[:o.ndim]) == [4, 3]
    np.testing.assert_allclose(y, slimrt.Session(path).run(x, width=0.5)[0], rtol=1e-6, atol=1e-6)
    # a bad width is a status code with a message, not a crash
    assert lib.slimrt_session_run_width(sess, C.c_double(2.0), C.byref(t), 1, C.byref(o), 1, None) == 1
    assert b"width" in lib.slimrt_last_error()
    lib.slimrt_session_free(sess)
    lib.slimrt_model_free(model)

"""Static int8 activation chains: the u8 ops (quantize, dequantize, qdense, qconv2d incl. the int8 depthwise
kernel, qmax_pool, qglobal_avg_pool, qadd, qactivation) against the numpy reference on every ISA, and the
``int8_chain`` pass on small networks.

Rounding: the runtime computes ``fma(float(acc), x_scale * w_scale, bias)`` (+ residual) in float32 and
requantizes with ``rint(y * (1 / out_scale))``; the reference does the same in float64. So integer
accumulators are exact, float outputs agree to float32 rounding, and a u8 output may differ by ONE code where
y lies within float rounding of a .5 tie (asserted: |diff| <= 1, and at most 1 % of the codes differ). All
ISAs are bit-identical to the scalar kernels (asserted exactly).
"""
import json

import numpy as np
import pytest

from slimrt._native import core
from slimrt.formats import QInt8
from slimrt.ir import Model
from slimrt.reference import dequantize_u8, quantize_u8

import slimrt

ISAS = core.cpu_info()["supported_isas"]


def _session(m, isa, threads=2):
    return slimrt.Session(m, isa=isa, threads=threads)


def _run_all_isas(m, feeds):
    """Outputs per ISA; asserts every ISA equals the scalar one bit for bit."""
    outs = {isa: _session(m, isa).run(feeds) for isa in ISAS}
    base = outs[ISAS[0]]
    for isa in ISAS[1:]:
        for a, b in zip(base, outs[isa]):
            np.testing.assert_array_equal(a, b, err_msg=f"{isa} differs from {ISAS[0]}")
    return base


def _close_u8(got, want, frac=0.01):
    got, want = np.asarray(got).astype(np.int32), np.asarray(want).astype(np.int32)
    assert got.shape == want.shape
    d = np.abs(got - want)
    assert d.max(initial=0) <= 1, f"max code difference {d.max()}"
    assert (d > 0).mean() <= frac, f"{(d > 0).mean():.3%} of the codes differ by one"


def _qint8(w):
    """Per-output-channel int8 weight (as compress does)."""
    w = np.asarray(w, dtype=np.float64)
    flat = w.reshape(w.shape[0], -1)
    s = np.where(np.abs(flat).max(1) > 0, np.abs(flat).max(1) / 127, 1.0).astype(np.float32)
    q = np.clip(np.rint(flat / s[:, None]), -127, 127).astype(np.int8)
    return QInt8(q.reshape(w.shape), s, axis=0)


def _u8(rng, shape):
    return rng.integers(0, 256, shape).astype(np.uint8)


# ---------------------------------------------------------------- quantize / dequantize
@pytest.mark.parametrize("n", [1, 15, 16, 17, 63, 64, 65, 1000, 4099])
def test_quantize_dequantize(rng, n):
    m = Model()
    m.add_input("x", (None, n))
    q = m.add_node("quantize", ["x"], {"scale": 0.037, "zero_point": 121})
    d = m.add_node("dequantize", [q], {"scale": 0.037, "zero_point": 121})
    m.outputs = [q, d]
    x = (rng.standard_normal((3, n)) * 3).astype(np.float32)
    x.ravel()[:3] = [np.nan, 1e9, -1e9]
    gq, gd = _run_all_isas(m, x)
    assert gq.dtype == np.uint8 and gd.dtype == np.float32
    want = quantize_u8(np.nan_to_num(x, nan=-1e30), 0.037, 121)  # NaN -> code 0, like x -> -inf
    _close_u8(gq, want, frac=0.01)
    np.testing.assert_allclose(gd, dequantize_u8(gq, 0.037, 121), rtol=1e-6, atol=1e-7)
    rq, rd = m.run_reference({"x": np.nan_to_num(x, nan=-1e30)})
    _close_u8(rq, gq)


# ---------------------------------------------------------------- qdense
def _qdense_model(k, n, act="none", out=(0.0, 0), residual=None, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    m = Model()
    m.add_input("x", (None, k), "uint8")
    w = m.add_constant("w", _qint8(rng.standard_normal((n, k)) * 0.2))
    ins = ["x", w]
    if bias:
        ins.append(m.add_constant("b", (rng.standard_normal(n) * 0.5).astype(np.float32)))
    attrs = {"x_scale": 0.02, "x_zero": 131, "out_scale": out[0], "out_zero": out[1], "act": act, "alpha": 0.1}
    if residual is not None:
        m.add_input("r", (None, n), residual)
        ins.append("r")
        attrs.update(residual=1, res_scale=0.05, res_zero=17)
    m.outputs = [m.add_node("qdense", ins, attrs)]
    return m


@pytest.mark.parametrize("m_rows", [1, 5, 8, 9])
@pytest.mark.parametrize("k,n", [(1, 1), (3, 47), (4, 48), (17, 49), (64, 97), (301, 16)])
def test_qdense_float_out_exact_accumulators(rng, m_rows, k, n):
    m = _qdense_model(k, n)
    x = _u8(rng, (m_rows, k))
    (got,) = _run_all_isas(m, x)
    assert got.dtype == np.float32
    w = m.constants["w"]
    acc = (x.astype(np.int64) - 131) @ w.q.reshape(n, k).astype(np.int64).T  # exact integers
    want = acc * (np.float32(0.02) * w.scale.astype(np.float32)).astype(np.float64) + m.constants["b"].data
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * np.abs(want).max())


@pytest.mark.parametrize("act", ["none", "relu", "relu6", "leaky_relu", "sigmoid"])
@pytest.mark.parametrize("residual", [None, "uint8", "float32"])
@pytest.mark.parametrize("k,n", [(7, 5), (64, 49), (96, 130)])
def test_qdense_u8_out(rng, act, residual, k, n):
    m = _qdense_model(k, n, act=act, out=(0.03, 40), residual=residual)
    feeds = {"x": _u8(rng, (11, k))}
    if residual == "uint8":
        feeds["r"] = _u8(rng, (11, n))
    elif residual == "float32":
        feeds["r"] = rng.standard_normal((11, n)).astype(np.float32)
    (got,) = _run_all_isas(m, feeds)
    assert got.dtype == np.uint8
    _close_u8(got, m.run_reference(feeds)[0])


# ---------------------------------------------------------------- qconv2d (GEMM and depthwise)
def _qconv_model(c, o, k, stride=1, pads=(0, 0, 0, 0), groups=1, act="relu", out=(0.04, 7), residual=None,
                 dil=1, seed=0):
    rng = np.random.default_rng(seed)
    m = Model()
    m.add_input("x", (None, None, None, c), "uint8")
    w = m.add_constant("w", _qint8(rng.standard_normal((o, k[0], k[1], c // groups)) * 0.3))
    b = m.add_constant("b", (rng.standard_normal(o) * 0.3).astype(np.float32))
    attrs = {"x_scale": 0.03, "x_zero": 100, "out_scale": out[0], "out_zero": out[1], "act": act,
             "strides": [stride, stride], "pads": list(pads), "groups": groups, "dilations": [dil, dil]}
    ins = ["x", w, b]
    if residual:
        attrs.update(residual=1, res_scale=0.02, res_zero=9)
        m.add_input("r", (None, None, None, o), residual)
        ins.append("r")
    m.outputs = [m.add_node("qconv2d", ins, attrs)]
    return m


CONV_CASES = [  # (c, o, kernel, stride, pads, groups, dilation)
    (8, 16, (1, 1), 1, (0, 0, 0, 0), 1, 1),       # 1x1: GEMM on the input in place (VNNI)
    (3, 17, (1, 1), 1, (0, 0, 0, 0), 1, 1),       # 1x1, C % 4 != 0: im2col path
    (16, 33, (1, 1), 2, (0, 0, 0, 0), 1, 1),      # strided 1x1 (ResNet downsample)
    (3, 8, (3, 3), 2, (1, 1, 1, 1), 1, 1),        # stem-like
    (5, 49, (3, 3), 1, (1, 0, 2, 1), 1, 1),       # asymmetric pads, > one AVX-512 panel
    (8, 12, (3, 3), 1, (1, 1, 1, 1), 2, 1),       # grouped
    (4, 6, (2, 3), 1, (0, 0, 0, 0), 1, 2),        # dilated, non-square
]
DW_CASES = [  # depthwise: c == o == groups
    (1, (3, 3), 1, (1, 1, 1, 1), 1),
    (15, (3, 3), 1, (1, 1, 1, 1), 1),
    (16, (3, 3), 2, (1, 1, 1, 1), 1),
    (17, (3, 3), 2, (0, 1, 1, 0), 1),
    (33, (5, 5), 1, (2, 2, 2, 2), 1),
    (24, (3, 3), 1, (2, 2, 2, 2), 2),
    (9, (3, 1), 1, (1, 0, 1, 0), 1),              # run-time kernel size
    (64, (3, 3), 1, (1, 1, 1, 1), 1),             # VNNI: one whole 64-channel block
    (80, (3, 3), 2, (1, 1, 1, 1), 1),             # VNNI: block + 16-channel tail
    (144, (3, 3), 1, (0, 1, 2, 1), 1),            # VNNI: two blocks + tail, uneven pads
    (72, (5, 5), 1, (2, 2, 2, 2), 2),             # VNNI: two row groups, dilation
    (32, (3, 3), 1, (1, 1, 1, 1), 1),             # VNNI: two output pixels per 64-lane block
    (16, (3, 3), 1, (0, 2, 1, 1), 1),             # VNNI: four pixels per block, left pad 2 (mixed columns)
    (32, (5, 3), 1, (2, 3, 2, 0), 2),             # VNNI: two pixels per block, row groups, dilation
    (32, (3, 3), 2, (1, 1, 1, 1), 1),             # VNNI: stride 2 keeps one pixel per block
    (96, (3, 3), 2, (1, 1, 1, 1), 1),             # VNNI: a 32-channel last block, stride 2
    (144, (3, 3), 2, (0, 1, 1, 2), 1),            # VNNI: a 16-channel last block, stride 2
    (48, (3, 3), 1, (1, 1, 1, 1), 1),             # VNNI: a 48-channel block
]


@pytest.mark.parametrize("case", CONV_CASES + [(c, c, k, s, p, c, d) for c, k, s, p, d in DW_CASES],
                         ids=lambda c: f"c{c[0]}o{c[1]}k{c[2][0]}x{c[2][1]}s{c[3]}g{c[5]}d{c[6]}")
@pytest.mark.parametrize("hw", [(1, 1), (7, 5), (13, 16)])
@pytest.mark.parametrize("residual", [None, "uint8"])
def test_qconv2d_u8(rng, case, hw, residual):
    c, o, k, s, p, g, d = case
    h, w = hw
    if (h + p[0] + p[2] - d * (k[0] - 1) - 1) < 0 or (w + p[1] + p[3] - d * (k[1] - 1) - 1) < 0:
        pytest.skip("kernel larger than the padded input")
    m = _qconv_model(c, o, k, s, p, g, act="relu6", residual=residual, dil=d)
    feeds = {"x": _u8(rng, (2, h, w, c))}
    if residual:
        oh = (h + p[0] + p[2] - d * (k[0] - 1) - 1) // s + 1
        ow = (w + p[1] + p[3] - d * (k[1] - 1) - 1) // s + 1
        feeds["r"] = _u8(rng, (2, oh, ow, o))
    (got,) = _run_all_isas(m, feeds)
    assert got.dtype == np.uint8
    _close_u8(got, m.run_reference(feeds)[0])
    kern = _session(m, ISAS[-1]).kernels()[0][2]
    assert kern.startswith("q8_dwconv" if g == c == o and g > 1 else "q8_conv"), kern


@pytest.mark.parametrize("case", [(16, 64, (3, 3), 1, (1, 1, 1, 1), 1, 1), (24, 144, (1, 1), 1, (0, 0, 0, 0), 1, 1),
                                  (80, 80, (3, 3), 1, (1, 1, 1, 1), 80, 1)], ids=["conv3x3", "conv1x1", "dw"])
@pytest.mark.parametrize("out", [(1e-3, 128), (1e-30, 3), (1e6, 255)], ids=["clip", "huge", "tiny"])
def test_qconv2d_u8_saturation_all_isas(rng, case, out):
    """Outputs far outside [0, 255] (|y / out_scale| up to ~1e30): every ISA's requantization (float
    clamp, or the integer form before the saturating packs) gives the scalar kernel's bytes."""
    c, o, k, s, p, g, d = case
    m = _qconv_model(c, o, k, s, p, g, act="none", out=out, dil=d)
    feeds = {"x": _u8(rng, (2, 9, 11, c))}
    (got,) = _run_all_isas(m, feeds)
    assert got.dtype == np.uint8
    if out[0] == 1e-30:
        assert set(np.unique(got).tolist()) <= {0, 255}
    _close_u8(got, m.run_reference(feeds)[0])


def _tie_conv_model(c, o, k, stride, pads, groups, act, out_scale, out_zero, residual, seed):
    """qconv2d whose products are powers of two: x_scale * w_scale = 2^-8, bias a multiple of 2^-9, so
    y * (1 / out_scale) lands EXACTLY on .5 ties (out_scale 2^-7) or on integers far past the clamps."""
    rng = np.random.default_rng(seed)
    m = Model()
    m.add_input("x", (None, None, None, c), "uint8")
    wq = rng.integers(-127, 128, (o, k[0], k[1], c // groups)).astype(np.int8)
    w = m.add_constant("w", QInt8(wq, np.full(o, 1 / 128, np.float32), axis=0))
    b = m.add_constant("b", (rng.integers(-600, 600, o) / 512).astype(np.float32))
    attrs = {"x_scale": 0.5, "x_zero": 77, "out_scale": out_scale, "out_zero": out_zero, "act": act, "alpha": 0.25,
             "strides": [stride, stride], "pads": list(pads), "groups": groups, "dilations": [1, 1]}
    ins = ["x", w, b]
    if residual:
        attrs.update(residual=1, res_scale=0.125, res_zero=9)
        m.add_input("r", (None, None, None, o), "uint8")
        ins.append("r")
    m.outputs = [m.add_node("qconv2d", ins, attrs)]
    return m


@pytest.mark.parametrize("o", [1, 15, 16, 17, 31, 33, 47, 48, 49, 63, 64, 65, 97, 144])
@pytest.mark.parametrize("kind", ["1x1", "3x3", "dw"])
def test_qconv2d_u8_ties_and_clamps_all_isas(rng, o, kind):
    """The static requantization at every panel width (fused into the VNNI GEMM tile; the depthwise
    kernels' lane-order form): exact .5 ties (round half to even), relu6's upper clamp, values far past
    255 and below 0, with and without a u8 residual, are the scalar kernel's bytes on every ISA and the
    reference's bytes exactly (every product is a power of two, so float32 rounding never enters)."""
    if kind == "1x1":
        c, k, s, p, g = 20, (1, 1), 1, (0, 0, 0, 0), 1
    elif kind == "3x3":
        c, k, s, p, g = 8, (3, 3), 2, (1, 1, 1, 1), 1
    else:
        c, k, s, p, g = o, (3, 3), 1, (1, 0, 1, 2), o
    for act, out_scale, out_zero in (("relu6", 2.0 ** -7, 3), ("none", 2.0 ** -7, 128), ("relu", 2.0 ** -5, 0),
                                     ("leaky_relu", 2.0 ** -3, 200), ("relu6", 2.0 ** -2, 250)):
        for residual in (None, "uint8"):
            m = _tie_conv_model(c, o if kind != "dw" else c, k, s, p, g, act, out_scale, out_zero, residual,
                                seed=o)
            feeds = {"x": _u8(rng, (2, 6, 9, c))}
            if residual:
                oh = (6 + p[0] + p[2] - k[0]) // s + 1
                ow = (9 + p[1] + p[3] - k[1]) // s + 1
                feeds["r"] = _u8(rng, (2, oh, ow, o if kind != "dw" else c))
            (got,) = _run_all_isas(m, feeds)
            want = m.run_reference(feeds)[0]
            np.testing.assert_array_equal(got, want, err_msg=f"{kind} o={o} {act} residual={residual}")


@pytest.mark.parametrize("stride", [1, 2])
def test_qconv2d_dw_big_input_all_isas(rng, stride):
    """A depthwise input over 2 MB (a big batch): the VNNI kernel prefetches the next output row's new
    input rows while it builds the current one; the bytes stay the scalar kernel's."""
    c = 80
    m = _qconv_model(c, c, (3, 3), stride, (1, 1, 1, 1), c, act="relu6")
    feeds = {"x": _u8(rng, (3, 61, 150, c))}  # 2.2 MB
    (got,) = _run_all_isas(m, feeds)
    _close_u8(got, m.run_reference(feeds)[0])


@pytest.mark.parametrize("act", ["none", "leaky_relu", "relu"])
@pytest.mark.parametrize("residual", [None, "float32"])
def test_qconv2d_float_out(rng, act, residual):
    for c, k, groups in ((16, (3, 3), 16), (6, (3, 3), 1)):
        m = _qconv_model(c, c, k, 1, (1, 1, 1, 1), groups, act=act, out=(0.0, 0), residual=residual)
        feeds = {"x": _u8(rng, (2, 9, 11, c))}
        if residual:
            feeds["r"] = rng.standard_normal((2, 9, 11, c)).astype(np.float32)
        (got,) = _run_all_isas(m, feeds)
        want = m.run_reference(feeds)[0]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


# ---------------------------------------------------------------- pooling, add, activation tables
@pytest.mark.parametrize("shape,kernel,stride,pads,ceil", [
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 0),
    ((2, 9, 7, 17), (3, 3), (2, 2), (1, 1, 1, 1), 0),
    ((1, 8, 8, 64), (2, 2), (2, 2), (0, 0, 0, 0), 0),
    ((2, 7, 7, 3), (3, 3), (2, 2), (0, 0, 0, 0), 1),
])
def test_qmax_pool_exact(rng, shape, kernel, stride, pads, ceil):
    m = Model()
    m.add_input("x", (None,) + shape[1:], "uint8")
    m.outputs = [m.add_node("qmax_pool", ["x"], {"kernel": list(kernel), "strides": list(stride),
                                                  "pads": list(pads), "ceil_mode": ceil})]
    x = _u8(rng, shape)
    (got,) = _run_all_isas(m, x)
    np.testing.assert_array_equal(got, m.run_reference(x)[0])


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 7, 5, 17), (2, 14, 14, 96)])
@pytest.mark.parametrize("out", [(0.0, 0), (0.011, 3)])
def test_qglobal_avg_pool(rng, shape, out):
    m = Model()
    m.add_input("x", (None,) + shape[1:], "uint8")
    m.outputs = [m.add_node("qglobal_avg_pool", ["x"], {"x_scale": 0.05, "x_zero": 60, "out_scale": out[0],
                                                         "out_zero": out[1]})]
    x = _u8(rng, shape)
    (got,) = _run_all_isas(m, x)
    want = m.run_reference(x)[0]
    if out[0]:
        _close_u8(got, want, frac=0.05)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 31, 1000])
@pytest.mark.parametrize("act", ["none", "relu", "relu6"])
def test_qadd(rng, n, act):
    m = Model()
    m.add_input("a", (None, n), "uint8")
    m.add_input("b", (None, n), "uint8")
    m.outputs = [m.add_node("qadd", ["a", "b"], {"a_scale": 0.03, "a_zero": 128, "b_scale": 0.07, "b_zero": 5,
                                                  "out_scale": 0.05, "out_zero": 90, "act": act})]
    feeds = {"a": _u8(rng, (3, n)), "b": _u8(rng, (3, n))}
    (got,) = _run_all_isas(m, feeds)
    _close_u8(got, m.run_reference(feeds)[0])


@pytest.mark.parametrize("act", ["none", "relu", "sigmoid", "tanh", "gelu", "hard_swish", "elu"])
def test_qactivation_table(act):
    m = Model()
    m.add_input("x", (None, 256), "uint8")
    m.outputs = [m.add_node("qactivation", ["x"], {"x_scale": 0.04, "x_zero": 128, "out_scale": 0.01,
                                                    "out_zero": 101, "act": act, "alpha": 0.5})]
    x = np.arange(256, dtype=np.uint8)[None]
    (got,) = _run_all_isas(m, x)
    _close_u8(got, m.run_reference(x)[0], frac=0.02)


# ---------------------------------------------------------------- file round trip and malformed attributes
def test_save_load_round_trip(tmp_path, rng):
    m = _qconv_model(16, 16, (3, 3), 1, (1, 1, 1, 1), 16, residual="uint8")
    path = str(tmp_path / "q.slim")
    m.save(path, optimize=False)
    from slimrt.slimfile import load

    back = load(path)
    assert [(n.op, n.attrs) for n in back.nodes] == [(n.op, n.attrs) for n in m.nodes]
    feeds = {"x": _u8(rng, (1, 6, 6, 16)), "r": _u8(rng, (1, 6, 6, 16))}
    np.testing.assert_array_equal(slimrt.Session(path).run(feeds)[0], slimrt.Session(m).run(feeds)[0])


@pytest.mark.parametrize("op,attrs", [
    ("quantize", {"scale": -1.0}),
    ("quantize", {"scale": 0.0}),
    ("quantize", {"zero_point": 256}),
    ("dequantize", {"zero_point": -1}),
    ("dequantize", {"scale": float("inf")}),
])
def test_loader_rejects_bad_quant_attrs(op, attrs):
    m = Model()
    m.add_input("x", (None, 4), "float32" if op == "quantize" else "uint8")
    m.outputs = [m.add_node(op, ["x"], attrs)]
    with pytest.raises(slimrt.FormatError):
        slimrt.Session(m)


@pytest.mark.parametrize("attrs", [{"x_zero": 300}, {"out_scale": -0.5}, {"res_zero": 256}, {"x_scale": 0.0}])
def test_loader_rejects_bad_qdense_attrs(attrs):
    m = _qdense_model(8, 4)
    m.nodes[0].attrs.update(attrs)
    with pytest.raises(slimrt.FormatError):
        slimrt.Session(m)


def test_qdense_needs_int8_weight():
    m = _qdense_model(8, 4)
    m.constants["w"] = slimrt.formats.Dense(np.ones((4, 8), np.float32))
    with pytest.raises(slimrt.FormatError, match="int8"):
        slimrt.Session(m)


# ---------------------------------------------------------------- the int8_chain pass
def _torch():
    return pytest.importorskip("torch")


def _convert(module, shape):
    torch = _torch()
    torch.manual_seed(0)
    module = module.eval()
    with torch.no_grad():
        for mm in module.modules():
            if isinstance(mm, torch.nn.BatchNorm2d):
                mm.running_mean.uniform_(-0.2, 0.2)
                mm.running_var.uniform_(0.6, 1.4)
    return slimrt.from_torch(module, (torch.zeros((1,) + shape),)), module


def _chain(model, calib):
    c = model.compress(quant="int8", calib=calib)
    return c, c.optimize()


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _check_chain(model, x, calib, tol, expect_ops):
    c, o = _chain(model, calib)
    ops = [n.op for n in o.nodes]
    for op, count in expect_ops.items():
        assert ops.count(op) == count, (op, ops)
    assert not any(n.op in ("dense", "conv2d") for n in o.nodes), ops
    # no dequantize feeding a quantize: chains never leave int8 in between
    prod = {n.outputs[0]: n for n in o.nodes}
    for n in o.nodes:
        if n.op == "quantize":
            assert n.inputs[0] not in prod or prod[n.inputs[0]].op != "dequantize"
    want = model.optimize().run_reference({model.inputs[0].name: x})[0]
    for isa in ISAS:
        got = slimrt.Session(o, isa=isa).run(x)[0]
        assert _rel(got, want) < tol, (isa, _rel(got, want))
    # idempotent, and the disabled pass leaves the dynamic path
    assert [n.op for n in o.optimize().nodes] == ops
    assert "qdense" not in [n.op for n in c.optimize(disable=["int8_chain"]).nodes]
    return o


def test_chain_mlp(rng):
    torch = _torch()
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(49, 31), torch.nn.ReLU(), torch.nn.Linear(31, 17),
                              torch.nn.ReLU(), torch.nn.Linear(17, 10))
    model, _ = _convert(net, (1, 7, 7))
    x = rng.standard_normal((64, 1, 7, 7)).astype(np.float32)
    o = _check_chain(model, x[:8], x, 0.05, {"quantize": 1, "qdense": 3, "dequantize": 0})
    last = [n for n in o.nodes if n.op == "qdense"][-1]
    assert last.attrs["out_scale"] == 0.0  # the logits leave the chain as float straight from the epilogue


def test_chain_lenet(rng):
    torch = _torch()
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 120), nn.ReLU(), nn.Linear(120, 10))
    model, _ = _convert(net, (1, 28, 28))
    x = rng.standard_normal((48, 1, 28, 28)).astype(np.float32)
    _check_chain(model, x[:4], x, 0.06, {"quantize": 1, "qconv2d": 2, "qmax_pool": 2, "qdense": 2})


def test_chain_keeps_narrow_convs_float(rng):
    """LeNet-5's 1->6 conv (6 outputs: most of an int8 tile's columns empty) and 6->16 conv (taps of 6
    channels gathered one by one) stay fp32 -- the direct fp32 conv measured 1.7-1.9x faster; the dense
    layers after them still chain in int8, and the whole model matches the float reference."""
    torch = _torch()
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 10))
    model, _ = _convert(net, (1, 28, 28))
    x = rng.standard_normal((48, 1, 28, 28)).astype(np.float32)
    _, o = _chain(model, x)
    ops = [n.op for n in o.nodes]
    assert ops.count("conv2d") == 2 and ops.count("qconv2d") == 0 and ops.count("qdense") == 2, ops
    want = model.optimize().run_reference({model.inputs[0].name: x[:4]})[0]
    for isa in ISAS:
        assert _rel(slimrt.Session(o, isa=isa).run(x[:4])[0], want) < 0.06, isa


def _resnet_block():
    torch = _torch()
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.c1 = nn.Sequential(nn.Conv2d(16, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
            self.c2 = nn.Sequential(nn.Conv2d(24, 24, 3, 1, 1, bias=False), nn.BatchNorm2d(24))
            self.down = nn.Sequential(nn.Conv2d(16, 24, 1, 2, bias=False), nn.BatchNorm2d(24))
            self.fc = nn.Linear(24, 5)

        def forward(self, x):
            x = self.stem(x)
            y = torch.relu(self.c2(self.c1(x)) + self.down(x))
            return self.fc(y.mean([2, 3]))

    return Block()


def test_chain_resnet_block(rng):
    model, _ = _convert(_resnet_block(), (3, 12, 12))
    x = rng.standard_normal((32, 3, 12, 12)).astype(np.float32)
    o = _check_chain(model, x[:4], x, 0.06, {"quantize": 1, "qconv2d": 4, "qdense": 1})
    res = [n for n in o.nodes if n.op == "qconv2d" and n.attr("residual")]
    assert len(res) == 1 and res[0].attrs["act"] == "relu"


def test_chain_mobilenetv2_block(rng):
    torch = _torch()
    nn = torch.nn

    class Inverted(nn.Module):
        def __init__(self, c=16, t=4):
            super().__init__()
            h = c * t
            self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6())
            self.body = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                      nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                      nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))
            self.head = nn.Linear(c, 7)

        def forward(self, x):
            x = self.stem(x)
            return self.head((x + self.body(x)).mean([2, 3]))

    model, _ = _convert(Inverted(), (3, 16, 16))
    x = rng.standard_normal((32, 3, 16, 16)).astype(np.float32)
    o = _check_chain(model, x[:4], x, 0.06, {"quantize": 1, "qconv2d": 4, "qdense": 1})
    kernels = [k for _, op, k in slimrt.Session(o).kernels()]
    assert any(k.startswith("q8_dwconv") for k in kernels), kernels


def test_chain_separable_block(rng):
    torch = _torch()
    nn = torch.nn

    class Sep(nn.Module):  # Xception middle block: relu -> dw -> pw -> bn, three times, + x
        def __init__(self, c=24):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
            layers = []
            for _ in range(2):
                layers += [nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
                           nn.BatchNorm2d(c)]
            self.body = nn.Sequential(*layers)
            self.pool = nn.MaxPool2d(3, 2, 1)
            self.fc = nn.Linear(c, 4)

        def forward(self, x):
            x = self.stem(x)
            x = self.pool(x + self.body(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    model, _ = _convert(Sep(), (3, 14, 14))
    x = rng.standard_normal((32, 3, 14, 14)).astype(np.float32)
    o = _check_chain(model, x[:4], x, 0.08, {"quantize": 1, "qmax_pool": 1, "qdense": 1})
    ops = [n.op for n in o.nodes]
    assert ops.count("qconv2d") == 5 and "dequantize" not in ops, ops


def test_chain_cancels_dequantize_quantize(rng):
    m = Model()
    m.add_input("x", (None, 8))
    q = m.add_node("quantize", ["x"], {"scale": 0.1, "zero_point": 3})
    d = m.add_node("dequantize", [q], {"scale": 0.1, "zero_point": 3})
    q2 = m.add_node("quantize", [d], {"scale": 0.1, "zero_point": 3})
    d2 = m.add_node("dequantize", [q2], {"scale": 0.1, "zero_point": 3})
    q3 = m.add_node("quantize", [d2], {"scale": 0.2, "zero_point": 9})
    m.outputs = [m.add_node("dequantize", [q3], {"scale": 0.2, "zero_point": 9})]
    o = m.optimize(only=["int8_chain", "dead_code"])
    assert [n.op for n in o.nodes] == ["quantize", "qactivation", "dequantize"]
    x = (rng.standard_normal((5, 8)) * 4).astype(np.float32)
    np.testing.assert_allclose(slimrt.Session(o).run(x)[0], m.run_reference(x)[0], atol=0.2 + 1e-6)


def test_chain_off_without_calibration(rng):
    m = _qdense_model(8, 4)  # already u8: nothing to do
    torch = _torch()
    model, _ = _convert(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4)), (1, 4, 4))
    c = model.compress(quant="int8")
    assert "act_quant" not in c.metadata
    assert [n.op for n in c.optimize().nodes] == [n.op for n in c.optimize(disable=["int8_chain"]).nodes]
    assert [n.op for n in m.optimize().nodes] == ["qdense"]


def test_fashion_cnn_static_int8_accuracy():
    from slimrt import demo

    x, y = demo.load_samples()
    with np.load(demo.CALIB, allow_pickle=False) as d:
        calib = d["x"][..., None].astype(np.float32)[:500]
    model = slimrt.from_keras(demo.MODEL)
    fp32 = demo.accuracy(slimrt.Session(model.optimize()), x, y)
    o = model.compress(quant="int8", calib=calib).optimize()
    ops = [n.op for n in o.nodes]
    assert "qconv2d" in ops and "qdense" in ops and ops.count("quantize") == 1, ops
    acc = demo.accuracy(slimrt.Session(o), x, y)
    assert acc >= fp32 - 0.005, (acc, fp32)
    meta = json.loads(o.metadata["act_quant"])
    assert all(len(v) == 2 for v in meta.values())


@pytest.mark.parametrize("act,lo,hi", [("relu", 77, 255), ("relu6", 77, 77 + 150)])
def test_qactivation_clamp_form(act, lo, hi):
    """relu / relu6 keeping the input's parameters are a clamp on the codes (run as such, exactly)."""
    m = Model()
    m.add_input("x", (None, 300), "uint8")
    m.outputs = [m.add_node("qactivation", ["x"], {"x_scale": 0.04, "x_zero": 77, "out_scale": 0.04,
                                                    "out_zero": 77, "act": act})]
    x = (np.arange(600) % 256).astype(np.uint8).reshape(2, 300)
    (got,) = _run_all_isas(m, x)
    np.testing.assert_array_equal(got, np.clip(x, lo, hi))
    np.testing.assert_array_equal(got, m.run_reference(x)[0])
    assert slimrt.Session(m).kernels()[0][2] == "q8_clamp"

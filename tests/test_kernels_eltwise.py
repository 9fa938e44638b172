"""Direct tests of the NHWC fp32 eltwise / pool / depthwise-conv kernels (slimrt._core.kernels).

Every kernel runs on every ISA this CPU supports (isa= passed explicitly) and is compared with
a float64 reference (numpy, or torch where the semantics are torch's). Outputs are written
through out= views into sentinel-filled buffers; the sentinels must survive.

Tolerances (float32 results vs float64 reference r):
  exact ops (relu*, prelu, binary, max pool, transpose, pad): bit-exact after rounding r to float32
  sigmoid / tanh / silu / elu / gelu / hard_*:  |y - r| <= 1e-6 |r| + 1e-30  (gelu: also the far
                                          negative tail, against 0.5 x erfc(-x/sqrt2) in float64)
  gelu_tanh:                              |y - r| <= 1e-6 |r| + 3e-7 |x|  (u carries x^3's rounding)
  softmax:                                |y - r| <= 1e-5 |r| + 1e-7
  layer_norm, channel_affine, avg pool:   |y - r| <= 1e-5 |r| + 1e-5
  dwconv:                                 |y - r| <= 1e-5 |r| + 1e-5 * (sum of |x w| per output) scale
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimrt._native import core

K = core.kernels
ISAS = core.cpu_info()["supported_isas"]
CS = [1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 67]
SENTINEL = np.float32(-7777.25)
GUARD = 19


def guarded(shape, dtype=np.float32):
    size = int(np.prod(shape))
    buf = np.full(size + 2 * GUARD, SENTINEL, dtype)
    return buf, buf[GUARD:GUARD + size].reshape(shape)


def check_guard(buf):
    assert np.all(buf[:GUARD] == SENTINEL) and np.all(buf[-GUARD:] == SENTINEL), "out-of-bounds write"


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def assert_close(y, r, rtol, atol):
    y = np.asarray(y, np.float64)
    r = np.asarray(r, np.float64)
    assert y.shape == r.shape
    err = np.abs(y - r)
    bound = rtol * np.abs(r) + atol
    bad = ~(err <= bound)
    assert not bad.any(), f"{bad.sum()} mismatches, worst err {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"


# ----------------------------------------------------------------------------- activations
_erfc = np.vectorize(__import__("math").erfc, otypes=[np.float64])


def _gelu_erfc(x):
    return 0.5 * x * _erfc(-x / np.sqrt(2.0))


def ref_act(name, x, alpha):
    t = torch.from_numpy(x.astype(np.float64))
    return {
        "none": t,
        "relu": F.relu(t),
        "relu6": F.relu6(t),
        "leaky_relu": F.leaky_relu(t, alpha),
        "sigmoid": torch.sigmoid(t),
        "tanh": torch.tanh(t),
        # 0.5 x erfc(-x/sqrt2): torch's float64 gelu (0.5 x (1 + erf)) cancels for x < -8
        "gelu": torch.from_numpy(_gelu_erfc(x.astype(np.float64))),
        "gelu_tanh": F.gelu(t, approximate="tanh"),
        "silu": F.silu(t),
        "hard_swish": F.hardswish(t),
        "elu": F.elu(t, alpha),
        "hard_sigmoid": F.relu6(t + 3) / 6,
    }[name].numpy()


ACTS = ["none", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu",
        "hard_swish", "elu", "hard_sigmoid"]
EXACT_ACTS = {"none", "relu", "relu6", "leaky_relu"}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", ACTS)
def test_act(isa, name):
    rng = np.random.default_rng(1)
    alpha = float(np.float32(0.3))  # exactly representable, so x * alpha rounds the same
    for n in [1, 7, 8, 15, 16, 17, 31, 33, 64, 67, 4099]:
        x = np.concatenate([rnd(rng, n, scale=4.0)]) if n < 4099 else np.linspace(-30, 30, n, dtype=np.float32)
        buf, out = guarded(x.shape)
        y = K.act(x, name, alpha=alpha, isa=isa, out=out)
        assert y is out or np.shares_memory(y, out)
        check_guard(buf)
        r = ref_act(name, x, alpha)
        if name in EXACT_ACTS:
            np.testing.assert_array_equal(out, r.astype(np.float32))
        elif name == "gelu_tanh":
            err = np.abs(out.astype(np.float64) - r)
            assert np.all(err <= 1e-6 * np.abs(r) + 3e-7 * np.abs(x.astype(np.float64)) + 1e-37)
        else:
            assert_close(out, r, 1e-6, 1e-30)
    # in place, multi-dim
    x = rnd(rng, 3, 5, 17, scale=3.0)
    x0 = x.copy()
    K.act(x, name, alpha=alpha, isa=isa, out=x)
    if name in EXACT_ACTS:
        np.testing.assert_array_equal(x, ref_act(name, x0, alpha).astype(np.float32))
    else:
        assert_close(x, ref_act(name, x0, alpha), 1e-6, 3e-7 * 3)


@pytest.mark.parametrize("isa", ISAS)
def test_gelu_relative_on_both_tails(isa):
    """vmath's gelu is relative-accurate down the negative tail (erfc with z^2 carried exactly)."""
    import math
    x = np.concatenate([np.linspace(-13.5, -0.5, 5201), np.linspace(-0.8, 0.8, 801), np.linspace(0.5, 20, 501),
                        [-1e-30, 1e-30, -1e-7, 1e-7, -0.70710677, 0.70710677, -14.1, -14.2, -1e5, 1e5]])
    x = x.astype(np.float32)
    r = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    for y in (K.act(x, "gelu", isa=isa), K.apply_act(x, "gelu", isa=isa)):
        ok = np.abs(r) > 1e-30
        rel = np.abs(y[ok] - r[ok]) / np.abs(r[ok])
        assert rel.max() <= 1e-6, f"rel err {rel.max():.3g} at x={x[ok][np.argmax(rel)]}"
        assert np.all(np.abs(y[~ok]) <= 1e-30)


@pytest.mark.parametrize("isa", ISAS)
def test_act_special_values(isa):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1e-40, -1e-40, 88.7, 95.0, -103.0, -200.0], np.float32)
    for name in ["sigmoid", "tanh", "silu", "elu", "gelu", "gelu_tanh"]:
        y = K.act(x, name, alpha=1.0, isa=isa)
        assert np.isnan(y[0]), name
        assert np.all(np.isfinite(y[3:])), name
    np.testing.assert_array_equal(K.act(x[1:3], "sigmoid", isa=isa), [1.0, 0.0])
    np.testing.assert_array_equal(K.act(x[1:3], "tanh", isa=isa), [1.0, -1.0])
    assert K.act(x[4:5], "tanh", isa=isa)[0] == np.float32(1e-40)  # subnormal passes through


@pytest.mark.parametrize("isa", ISAS)
def test_prelu(isa):
    rng = np.random.default_rng(2)
    for c in CS:
        x = rnd(rng, 2, 3, c)
        for slope in (rnd(rng, c), rnd(rng, 2, 3, c)):
            buf, out = guarded(x.shape)
            K.prelu(x, slope, isa=isa, out=out)
            check_guard(buf)
            ref = np.where(x >= 0, x, x.astype(np.float64) * np.broadcast_to(slope, x.shape)).astype(np.float32)
            np.testing.assert_array_equal(out, ref)


# ----------------------------------------------------------------------------- binary
BINARY_SHAPES = [
    ((17,), (17,)), ((2, 3, 5, 33), (2, 3, 5, 33)), ((4, 5, 6, 67), (67,)), ((4, 5, 6, 7), ()),
    ((), (3, 1, 8)), ((9, 1), (1, 15)), ((3, 4, 1), (3, 1, 16)), ((2, 1, 3, 1, 5, 1), (1, 4, 1, 2, 1, 31)),
    ((1,), (7, 1)), ((2, 3, 4, 5, 6, 7), (3, 1, 5, 1, 7)), ((5, 1, 1, 64), (5, 9, 9, 64)),
    ((0, 3), (3,)),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary(isa, op):
    rng = np.random.default_rng(3)
    f = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op]
    for sa, sb in BINARY_SHAPES:
        a = rnd(rng, *sa)
        b = rnd(rng, *sb)
        if op == "div":
            b = np.where(np.abs(b) < 0.1, np.float32(0.5), b).astype(np.float32)
        shape = np.broadcast_shapes(sa, sb)
        buf, out = guarded(shape)
        K.binary(op, a, b, isa=isa, out=out)
        check_guard(buf)
        # float32 op == float64 op rounded to float32 for +,-,*,/ (correct rounding)
        np.testing.assert_array_equal(out, f(a.astype(np.float64), b.astype(np.float64)).astype(np.float32))
    # threaded, big, same shape and channel broadcast
    a = rnd(rng, 64, 33, 67)
    b = rnd(rng, 67)
    np.testing.assert_array_equal(K.binary(op, a, b, isa=isa, threads=2),
                                  f(a.astype(np.float64), b).astype(np.float32))
    # in place into a
    a2 = a.copy()
    K.binary(op, a2, a, isa=isa, out=a2)
    np.testing.assert_array_equal(a2, f(a.astype(np.float64), a.astype(np.float64)).astype(np.float32))


def test_binary_errors():
    with pytest.raises(core.InputError):
        K.binary("add", np.zeros((3, 4), np.float32), np.zeros((5,), np.float32))
    with pytest.raises(core.InputError):
        K.binary("pow", np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(core.InputError):
        K.binary("add", np.zeros(3, np.float64), np.zeros(3, np.float32))
    with pytest.raises(core.InputError):
        K.binary("add", np.zeros(3, np.float32), np.zeros(3, np.float32), out=np.zeros(4, np.float32))


# ----------------------------------------------------------------------------- softmax / norms
def ref_softmax(x, scale, mask):
    v = x.astype(np.float64) * scale
    if mask is not None:
        v = v + mask
    v = v - v.max(-1, keepdims=True)
    e = np.exp(v)
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("isa", ISAS)
def test_softmax(isa):
    rng = np.random.default_rng(4)
    for n in [1, 7, 8, 15, 16, 17, 31, 33, 64, 67, 1000]:
        x = rnd(rng, 5, n, scale=5.0)
        buf, out = guarded(x.shape)
        K.softmax(x, isa=isa, out=out)
        check_guard(buf)
        assert_close(out, ref_softmax(x, 1.0, None), 1e-5, 1e-7)
    x = rnd(rng, 300, 129, scale=4.0)  # several tasks on two threads
    assert_close(K.softmax(x, scale=0.5, isa=isa, threads=2), ref_softmax(x, 0.5, None), 1e-5, 1e-7)
    # large magnitudes: max subtraction keeps it finite
    x = np.array([[1000.0, 999.0, -1000.0], [-1e30, -1e30, -1e30]], np.float32)
    assert_close(K.softmax(x, isa=isa), ref_softmax(x, 1.0, None), 1e-5, 1e-7)


@pytest.mark.parametrize("isa", ISAS)
def test_softmax_scaled_masked(isa):
    rng = np.random.default_rng(5)
    B, H, S, T = 2, 3, 5, 17
    x = rnd(rng, B, H, S, T, scale=3.0)
    masks = [
        rnd(rng, T),                      # one row for all
        rnd(rng, S, T),                   # causal-style [Sq, Sk]
        rnd(rng, B, 1, 1, T),             # key padding
        rnd(rng, B, H, 1, T),             # per (b, h)
        rnd(rng, B, H, S, T),             # full
        rnd(rng, B, 1, S, T),             # two blocks -> materialised
    ]
    causal = np.triu(np.full((S, T), -np.inf, np.float32), k=1 + T - S)
    masks.append(causal)
    for mask in masks:
        buf, out = guarded(x.shape)
        K.softmax(x, scale=0.125, mask=mask, isa=isa, out=out)
        check_guard(buf)
        assert_close(out, ref_softmax(x, 0.125, mask.astype(np.float64)), 1e-5, 1e-7)
    with pytest.raises(core.InputError):
        K.softmax(x, mask=rnd(rng, T + 1), isa=isa)


@pytest.mark.parametrize("isa", ISAS)
def test_layer_norm(isa):
    rng = np.random.default_rng(6)
    for n in [1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 67, 768]:
        x = rnd(rng, 4, n, scale=2.0) + np.float32(3.0)
        g, b = rnd(rng, n), rnd(rng, n)
        buf, out = guarded(x.shape)
        K.layer_norm(x, g, b, 1e-5, isa=isa, out=out)
        check_guard(buf)
        xd = x.astype(np.float64)
        mu = xd.mean(-1, keepdims=True)
        var = ((xd - mu) ** 2).mean(-1, keepdims=True)
        ref = (xd - mu) / np.sqrt(var + 1e-5) * g + b
        assert_close(out, ref, 1e-5, 2e-5)
        assert_close(K.layer_norm(x, eps=1e-5, isa=isa), (xd - mu) / np.sqrt(var + 1e-5), 1e-5, 2e-5)
    x = rnd(rng, 300, 129) * np.float32(100) + np.float32(1000)  # large mean: two-pass variance
    xd = x.astype(np.float64)
    mu = xd.mean(-1, keepdims=True)
    ref = (xd - mu) / np.sqrt(((xd - mu) ** 2).mean(-1, keepdims=True) + 1e-6)
    assert_close(K.layer_norm(x, eps=1e-6, isa=isa, threads=2), ref, 1e-4, 1e-4)


@pytest.mark.parametrize("isa", ISAS)
def test_channel_affine(isa):
    rng = np.random.default_rng(7)
    for c in CS:
        for rows in (1, 5, 37):
            x = rnd(rng, rows, c)
            s, t = rnd(rng, c), rnd(rng, c)
            buf, out = guarded(x.shape)
            K.channel_affine(x, s, t, isa=isa, out=out)
            check_guard(buf)
            assert_close(out, x.astype(np.float64) * s + t, 1e-6, 1e-6)
            assert_close(K.channel_affine(x, s, isa=isa), x.astype(np.float64) * s, 1e-6, 1e-7)


# ----------------------------------------------------------------------------- stream sum
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_sum(isa, threads):
    rng = np.random.default_rng(11)
    for n in (0, 1, 15, 16, 17, 63, 64, 65, 127, 1000, 3 * 32768 + 7, 1_000_003):
        # Small integers: every partial sum is exact in float32, so the result must be exact.
        x = rng.integers(-8, 9, n).astype(np.float32)
        assert K.sum(x, isa=isa, threads=threads) == float(x.astype(np.int64).sum())
        if n:
            for pos in (0, n - 1, n // 2):  # every element is read: a NaN anywhere shows
                y = x.copy()
                y[pos] = np.nan
                assert np.isnan(K.sum(y, isa=isa, threads=threads))
    x = rng.random(100_003, dtype=np.float32)
    assert abs(K.sum(x, isa=isa, threads=threads) - x.astype(np.float64).sum()) \
        <= 1e-5 * x.sum(dtype=np.float64)
    z = rng.random((3, 5, 7), dtype=np.float32)  # any shape: all elements
    assert abs(K.sum(z, isa=isa) - z.astype(np.float64).sum()) <= 1e-5 * z.sum(dtype=np.float64)


# ----------------------------------------------------------------------------- depthwise conv
def ref_dwconv(x, w, bias, strides, dilations, pads, mult):
    """x NHWC, w [KH, KW, C*mult], pads (t, l, b, r) -> float64 NHWC via torch."""
    N, H, W, C = x.shape
    xt = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
    xt = F.pad(xt, (pads[1], pads[3], pads[0], pads[2]))
    wt = torch.from_numpy(w.astype(np.float64)).permute(2, 0, 1).unsqueeze(1)  # [O, 1, KH, KW]
    bt = None if bias is None else torch.from_numpy(bias.astype(np.float64))
    y = F.conv2d(xt, wt, bt, stride=strides, dilation=dilations, groups=C)
    return y.permute(0, 2, 3, 1).numpy()


DW_CASES = [
    # (N, H, W, C, mult, KH, KW, strides, dilations, pads)
    (1, 7, 9, 16, 1, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (2, 9, 7, 17, 1, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1)),
    (1, 8, 8, 33, 1, 3, 3, (2, 2), (1, 1), (0, 0, 1, 1)),
    (1, 1, 1, 7, 1, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (1, 5, 13, 67, 1, 5, 5, (1, 1), (1, 1), (2, 2, 2, 2)),
    (1, 9, 9, 31, 1, 5, 5, (2, 2), (1, 1), (2, 1, 2, 3)),
    (1, 9, 11, 15, 1, 3, 3, (1, 1), (2, 2), (2, 2, 2, 2)),
    (1, 6, 5, 3, 2, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1)),
    (2, 5, 7, 8, 3, 3, 5, (1, 2), (1, 1), (1, 2, 1, 2)),
    (1, 3, 9, 64, 1, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0)),
    (1, 7, 7, 1, 1, 7, 7, (1, 1), (1, 1), (3, 3, 3, 3)),
    (1, 4, 17, 16, 1, 3, 3, (1, 3), (1, 1), (0, 0, 0, 0)),
    (1, 2, 2, 17, 1, 3, 3, (1, 1), (3, 3), (3, 3, 3, 3)),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", range(len(DW_CASES)))
def test_dwconv2d(isa, case):
    N, H, W, C, m, KH, KW, st, dl, pd = DW_CASES[case]
    rng = np.random.default_rng(100 + case)
    x = rnd(rng, N, H, W, C)
    w = rnd(rng, KH, KW, C * m)
    bias = rnd(rng, C * m)
    ref = ref_dwconv(x, w, bias, st, dl, pd, m)
    mag = ref_dwconv(np.abs(x), np.abs(w), None, st, dl, pd, m) + 1.0
    buf, out = guarded(ref.shape)
    K.dwconv2d(x, w, bias, strides=st, dilations=dl, pads=pd, isa=isa, out=out)
    check_guard(buf)
    assert np.all(np.abs(out - ref) <= 2e-6 * mag)
    # fused epilogue: scale, residual, activation; threaded
    scale = rnd(rng, C * m)
    res = rnd(rng, *ref.shape)
    y = K.dwconv2d(x, w, bias, strides=st, dilations=dl, pads=pd, act="relu6", isa=isa, threads=2,
                   scale=scale, residual=res)
    ref2 = np.clip((ref - bias) * scale + bias + res, 0, 6)
    assert np.all(np.abs(y - ref2) <= 2e-6 * (mag * np.abs(scale) + np.abs(res) + 1))
    y = K.dwconv2d(x, w, None, strides=st, dilations=dl, pads=pd, act="hard_swish", isa=isa)
    r3 = ref - bias
    assert_close(y, r3 * np.clip(r3 + 3, 0, 6) / 6, 1e-5, 1e-5 * mag.max())


@pytest.mark.parametrize("isa", ISAS)
def test_dwconv2d_channel_sweep(isa):
    rng = np.random.default_rng(8)
    for c in CS:
        for hw in (1, 3, 5):
            x = rnd(rng, 1, hw, 2 * hw + 13, c)  # wide enough for the 8-pixel blocks of the 3x3 path
            w = rnd(rng, 3, 3, c)
            for st in (1, 2):
                ref = ref_dwconv(x, w, None, (st, st), (1, 1), (1, 1, 1, 1), 1)
                buf, out = guarded(ref.shape)
                K.dwconv2d(x, w, strides=st, pads=1, isa=isa, out=out)
                check_guard(buf)
                assert_close(out, ref, 1e-5, 1e-5)
                # fused relu6 + residual on the same path
                res = rnd(rng, *ref.shape)
                y = K.dwconv2d(x, w, strides=st, pads=1, act="relu6", residual=res, isa=isa)
                assert_close(y, np.clip(ref + res, 0, 6), 1e-5, 1e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_dwconv2d_wide_rows(isa):
    """Rows of >= 16 output pixels at stride 1 (the AVX-512 3x3 kernel that carries input columns
    from block to block): every padding of the row ends, partial channel vectors, rows shorter than
    the kernel, the whole fused epilogue (scale, bias, residual, none / relu / relu6) into an
    unaligned guarded output; the same bits as the AVX2 kernel (same FMA order per output)."""
    rng = np.random.default_rng(9)
    acts = {"none": lambda v: v, "relu": lambda v: np.maximum(v, 0), "relu6": lambda v: np.clip(v, 0, 6)}
    for n, h, wd, c, pads in [(1, 5, 16, 16, (1, 1, 1, 1)), (2, 3, 23, 40, (1, 1, 1, 1)), (1, 6, 40, 67, (0, 0, 0, 0)),
                              (1, 2, 19, 17, (2, 2, 2, 2)), (1, 4, 33, 32, (0, 1, 2, 0)), (1, 1, 18, 5, (1, 1, 1, 1))]:
        x = rnd(rng, n, h, wd, c)
        w = rnd(rng, 3, 3, c)
        bias, scale = rnd(rng, c), rnd(rng, c)
        ref = ref_dwconv(x, w, None, (1, 1), (1, 1), pads, 1)
        mag = ref_dwconv(np.abs(x), np.abs(w), None, (1, 1), (1, 1), pads, 1)
        res = rnd(rng, *ref.shape)
        tol = 2e-6 * (mag * np.abs(scale) + np.abs(bias) + np.abs(res) + 1)
        for act, f in acts.items():
            buf, out = aligned_guarded(ref.shape, 3)
            y = K.dwconv2d(x, w, bias, strides=1, pads=pads, act=act, scale=scale, residual=res, isa=isa, out=out)
            check_guard(buf)
            assert np.all(np.abs(y - f(ref * scale + bias + res)) <= tol), (n, h, wd, c, pads, act)
            if isa == "avx512" and "avx2" in ISAS:
                y2 = K.dwconv2d(x, w, bias, strides=1, pads=pads, act=act, scale=scale, residual=res, isa="avx2")
                assert np.array_equal(y.view(np.uint32), y2.view(np.uint32)), (n, h, wd, c, pads, act)


def aligned_guarded(shape, offset):
    """A sentinel-guarded output whose first element sits `offset` floats past a 64-byte boundary."""
    size = int(np.prod(shape))
    raw = np.full(size + 2 * GUARD + 64, SENTINEL, np.float32)
    start = (-raw.ctypes.data % 64) // 4 + 32 + offset  # 64-byte aligned + offset, >= GUARD floats in
    buf = raw[start - GUARD:start + size + GUARD]
    return buf, buf[GUARD:GUARD + size].reshape(shape)


_BIG_DW = {}


@pytest.mark.parametrize("st,c", [(1, 112), (2, 112), (1, 100)])
@pytest.mark.parametrize("isa", ISAS)
def test_dwconv2d_big_batch(isa, st, c):
    """Tensors bigger than the caches (a batch of 6): inputs over 2 MB are prefetched a row ahead,
    outputs over 8 MB go through streaming stores when C is a multiple of the vector width and the
    output is vector-aligned (offset 0), plain stores otherwise (offset 5, C = 100); 3x3 fused
    epilogue; guards around the output; threads 1 and 2 bitwise identical."""
    if (st, c) not in _BIG_DW:  # the float64 reference once per case, shared by the ISAs
        rng = np.random.default_rng(40 + st + c)
        x = rnd(rng, 6, 56, 57, c)
        w = rnd(rng, 3, 3, c)
        bias, scale = rnd(rng, c), rnd(rng, c)
        ref = ref_dwconv(x, w, None, (st, st), (1, 1), (1, 1, 1, 1), 1)
        mag = ref_dwconv(np.abs(x), np.abs(w), None, (st, st), (1, 1), (1, 1, 1, 1), 1)
        res = rnd(rng, *ref.shape)
        want = np.clip(ref * scale + bias + res, 0, 6)
        tol = 2e-6 * (mag * np.abs(scale) + np.abs(bias) + np.abs(res) + 1)
        _BIG_DW[(st, c)] = (x, w, bias, scale, res, want, tol)
    x, w, bias, scale, res, want, tol = _BIG_DW[(st, c)]
    ref = want
    outs = []
    for offset, threads in [(0, 1), (5, 2), (0, 2)]:
        buf, out = aligned_guarded(ref.shape, offset)
        y = K.dwconv2d(x, w, bias, strides=st, pads=1, act="relu6", scale=scale, residual=res, isa=isa,
                       threads=threads, out=out)
        assert np.shares_memory(y, buf)
        check_guard(buf)
        assert np.all(np.abs(out - want) <= tol), f"max err {np.max(np.abs(out - want) - tol)}"
        outs.append(out.copy())
    for o in outs[1:]:
        assert np.array_equal(o.view(np.uint32), outs[0].view(np.uint32))


def test_dwconv2d_errors():
    x = np.zeros((1, 4, 4, 3), np.float32)
    with pytest.raises(core.InputError):
        K.dwconv2d(x, np.zeros((3, 3, 4), np.float32))  # not a multiple of C
    with pytest.raises(core.InputError):
        K.dwconv2d(x, np.zeros((7, 7, 3), np.float32))  # kernel larger than input
    with pytest.raises(core.InputError):
        K.dwconv2d(x, np.zeros((3, 3, 3), np.float32), pads=1, out=np.zeros((1, 4, 4, 4), np.float32))
    with pytest.raises(core.InputError):
        K.dwconv2d(x, np.zeros((3, 3, 3), np.float32), act="swish")


# ----------------------------------------------------------------------------- pooling
def torch_pool(x, kind, k, s, p, ceil_mode, cip):
    xt = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
    if kind == "max":
        y = F.max_pool2d(xt, k, s, p, ceil_mode=ceil_mode)
    else:
        y = F.avg_pool2d(xt, k, s, p, ceil_mode=ceil_mode, count_include_pad=cip)
    return y.permute(0, 2, 3, 1).numpy()


POOL_CASES = [
    # (H, W, k, s, p)
    (7, 7, (3, 3), (2, 2), (1, 1)), (8, 8, (2, 2), (2, 2), (0, 0)), (9, 5, (3, 3), (2, 2), (0, 0)),
    (6, 9, (3, 2), (2, 3), (1, 1)), (5, 5, (5, 5), (1, 1), (2, 2)), (1, 1, (1, 1), (1, 1), (0, 0)),
    (4, 7, (2, 2), (3, 3), (1, 1)), (11, 11, (3, 3), (3, 3), (1, 1)), (2, 3, (2, 2), (2, 2), (1, 1)),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d_torch(isa, kind):
    rng = np.random.default_rng(9)
    for ci, (H, W, k, s, p) in enumerate(POOL_CASES):
        c = CS[ci % len(CS)]
        x = rnd(rng, 2, H, W, c)
        for ceil_mode in (False, True):
            for cip in ((True, False) if kind == "avg" else (True,)):
                ref = torch_pool(x, kind, k, s, p, ceil_mode, cip)
                buf, out = guarded(ref.shape)
                K.pool2d(x, kind, kernel=k, strides=s, pads=p, ceil_mode=ceil_mode, count_include_pad=cip,
                         isa=isa, out=out)
                check_guard(buf)
                if kind == "max":
                    np.testing.assert_array_equal(out, ref.astype(np.float32))
                else:
                    assert_close(out, ref, 1e-6, 1e-6)


@pytest.mark.parametrize("isa", ISAS)
def test_pool2d_channels_and_asymmetric_pads(isa):
    rng = np.random.default_rng(10)
    for c in CS:
        x = rnd(rng, 1, 6, 7, c)
        pads = (0, 1, 2, 1)  # t, l, b, r
        xt = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
        # max: padding with -inf then an unpadded pool; avg (count_include_pad): zero padding
        mref = F.max_pool2d(F.pad(xt, (1, 1, 0, 2), value=-np.inf), 3, 2).permute(0, 2, 3, 1).numpy()
        aref = F.avg_pool2d(F.pad(xt, (1, 1, 0, 2)), 3, 2).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(K.pool2d(x, "max", kernel=3, strides=2, pads=pads, isa=isa, threads=2),
                                      mref.astype(np.float32))
        assert_close(K.pool2d(x, "avg", kernel=3, strides=2, pads=pads, isa=isa), aref, 1e-6, 1e-6)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_global_pool(isa, kind):
    rng = np.random.default_rng(11)
    for c in CS:
        for hw in [(1, 1), (3, 5), (7, 7)]:
            x = rnd(rng, 2, *hw, c)
            buf, out = guarded((2, c))
            K.global_pool(x, kind, isa=isa, out=out)
            check_guard(buf)
            if kind == "max":
                np.testing.assert_array_equal(out, x.max(axis=(1, 2)))
            else:
                assert_close(out, x.astype(np.float64).mean(axis=(1, 2)), 1e-6, 1e-6)


def test_pool_errors():
    x = np.zeros((1, 4, 4, 3), np.float32)
    with pytest.raises(core.InputError):
        K.pool2d(x, "min", kernel=2)
    with pytest.raises(core.InputError):
        K.pool2d(x, "max", kernel=5)
    with pytest.raises(core.InputError):
        K.pool2d(x, "max", kernel=2, pads=2)
    with pytest.raises(core.InputError):
        K.pool2d(x, "max", kernel=2, out=np.zeros((1, 2, 2, 3), np.float32)[:, :, :, :2])


# ----------------------------------------------------------------------------- transpose / pad
TRANSPOSES = [
    ((5, 7), (1, 0)), ((2, 9, 7, 17), (0, 3, 1, 2)), ((2, 17, 9, 7), (0, 2, 3, 1)), ((1, 33, 65, 1), (0, 2, 1, 3)),
    ((3, 4, 5), (2, 0, 1)), ((3, 4, 5), (0, 1, 2)), ((2, 3, 4, 5, 6, 7), (5, 3, 1, 0, 2, 4)),
    ((2, 3, 4, 5, 6, 7), (0, 1, 2, 3, 5, 4)), ((2, 1, 3, 1, 5, 4), (1, 3, 0, 2, 5, 4)), ((7,), (0,)),
    ((130, 67), (1, 0)), ((0, 3), (1, 0)), ((4, 1), (1, 0)),
    # many-channel maps both ways, several 64x64 blocks with ragged edges (the fp32 tiles run along
    # the side whose rows are farther apart)
    ((1, 70, 9, 67), (0, 3, 1, 2)), ((1, 130, 9, 67), (0, 2, 3, 1)),
    # 3-plane images to NHWC (AVX-512: 16 pixels per step, two permutes per vector; tails of 15 and 5)
    ((2, 3, 7, 9), (0, 2, 3, 1)), ((1, 3, 16, 16), (0, 2, 3, 1)), ((1, 3, 1, 5), (0, 2, 3, 1)),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32, np.int64])
def test_transpose(isa, dtype):
    rng = np.random.default_rng(12)
    for shape, perm in TRANSPOSES:
        x = (rng.standard_normal(shape) * 100).astype(dtype)
        y = K.transpose(x, list(perm), isa=isa)
        assert y.dtype == x.dtype and y.flags.c_contiguous
        np.testing.assert_array_equal(y, np.transpose(x, perm))
    x = rnd(rng, 2, 300, 257)
    np.testing.assert_array_equal(K.transpose(x, [0, 2, 1], isa=isa, threads=2), x.transpose(0, 2, 1))
    x = rnd(rng, 1, 300, 257)
    np.testing.assert_array_equal(K.transpose(x, [0, 2, 1], isa=isa, threads=2), x.transpose(0, 2, 1))
    with pytest.raises(core.InputError):
        K.transpose(x, [0, 0, 1], isa=isa)


def ref_pad(x, begin, end, value):
    # numpy pad for positive pads, slicing for negative ones
    pos = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    y = np.pad(x, pos, constant_values=value)
    sl = tuple(slice(max(-b, 0), y.shape[d] - max(-e, 0)) for d, (b, e) in enumerate(zip(begin, end)))
    return y[sl]


PADS = [
    ((5,), (2,), (3,)), ((3, 4), (1, 0), (0, 2)), ((1, 4, 5, 3), (0, 1, 1, 0), (0, 1, 2, 0)),
    ((2, 3, 4), (0, -1, 2), (1, 0, -2)), ((2, 1, 2, 1, 2, 3), (1, 0, 0, 1, 0, 1), (0, 1, 1, 0, 1, 2)),
    ((4, 4), (-4, 0), (0, 0)), ((3, 5), (0, -2), (0, -2)),
]


@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32, np.int64])
def test_pad(dtype):
    rng = np.random.default_rng(13)
    for shape, b, e in PADS:
        x = (rng.standard_normal(shape) * 50).astype(dtype)
        for value in (0, 3):
            y = K.pad(x, list(b) + list(e), value, isa=ISAS[-1], threads=2)
            np.testing.assert_array_equal(y, ref_pad(x, b, e, dtype(value)))
    with pytest.raises(core.InputError):
        K.pad(np.zeros((2, 2), np.float32), [1, 1])
    with pytest.raises(core.InputError):
        K.pad(np.zeros((2, 2), np.float32), [-3, 0, 0, 0])


def test_isa_and_arg_errors():
    x = np.zeros(8, np.float32)
    if "amx" not in ISAS:
        with pytest.raises(core.UnsupportedError):
            K.act(x, "relu", isa="amx")
    with pytest.raises(core.InputError):
        K.act(x, "relu", isa="sse9")
    with pytest.raises(core.InputError):
        K.act(x, "swish")
    with pytest.raises(core.InputError):
        K.act(x.astype(np.float64), "relu")
    with pytest.raises(core.InputError):
        K.act(x, "relu", out=np.zeros(16, np.float32)[::2])  # strided out
    with pytest.raises(core.InputError):
        K.prelu(np.zeros((2, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(core.InputError):
        K.layer_norm(np.zeros((2, 3), np.float32), np.zeros(4, np.float32))
    # a strided input is copied, not rejected
    xs = np.arange(16, dtype=np.float32)[::2] - 4
    np.testing.assert_array_equal(K.act(xs, "relu"), np.maximum(xs, 0))

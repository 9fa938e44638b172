"""int8 GEMM / conv kernels (slimrt._core.kernels q8_*) against numpy references, on every ISA.

Exactness / tolerances (stated once, used everywhere):
  int32 accumulators  run_acc == (aq - a_zero) @ wq.T in int64, EXACTLY.
  quantization        quantize_rows_u8 / quantize_u8 == a numpy float32 emulation of the documented
                      rule (q = clip(rint(x * (1/scale)) + zero, 0, 255)), EXACTLY.
  float outputs       |y - ref| <= 4e-7 * (|acc * a_scale * w_scale| + |bias| + |residual|) + 1e-30 where
                      ref is float64 of the exact int accumulators (the kernel rounds a_scale*w_scale,
                      float(acc) and one fma: <= 3 float ulps). Non-trivial activations add their
                      kernel error (ACT_RTOL, as for the fp32 GEMM) on top.
  u8 outputs          |q - ref| <= 1 with ref = clip(rint(y64 / out_scale) + out_zero) (rounding ties),
                      and at most 1% of elements off by one.
  across ISAs         for act in none/relu/relu6/leaky_relu all ISAs give bit-identical float and u8 output.
  threads             threads=1 and threads=2 give bit-identical results.
"""
import math

import numpy as np
import pytest

from slimrt._native import core

K = core.kernels
ISAS = core.cpu_info()["supported_isas"]
INLINE_ACTS = ["none", "relu", "relu6", "leaky_relu"]
SENT_F = np.float32(-7777.0)
SENT_I = np.int32(-123456789)
SENT_U = np.uint8(77)
ZEROS = [0, 18, 128, 231, 255]

# (M, N, K): tile edges of every kernel (mr 4/6/8, nr 4/16/48, K groups 1/2/4) and primes.
SHAPES = [(1, 1, 1), (1, 7, 3), (2, 16, 17), (3, 17, 8), (7, 15, 33), (8, 48, 64), (9, 49, 65),
          (15, 31, 7), (16, 33, 100), (17, 64, 31), (31, 100, 15), (33, 47, 2), (65, 97, 129), (100, 2, 16)]


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def ref_act(x, act, alpha=0.0):
    x = np.asarray(x, np.float64)
    if act == "none":
        return x
    if act == "relu":
        return np.maximum(x, 0)
    if act == "relu6":
        return np.clip(x, 0, 6)
    if act == "leaky_relu":
        return np.where(x < 0, alpha * x, x)
    if act == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if act == "tanh":
        return np.tanh(x)
    if act == "gelu":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if act == "silu":
        return x / (1 + np.exp(-x))
    raise ValueError(act)


ACT_RTOL = {"none": 0, "relu": 0, "relu6": 0, "leaky_relu": 1e-7, "sigmoid": 1e-6, "tanh": 1e-6, "gelu": 1e-6,
            "silu": 1e-6}


def guarded(shape, dtype, sentinel):
    """A view of `shape` inside a sentinel-filled block with a margin on every side."""
    big = np.full((shape[0] + 4, shape[1] + 9), sentinel, dtype=dtype)
    return big, big[2:2 + shape[0], 3:3 + shape[1]]


def check_guard(big, shape, sentinel):
    mask = np.ones(big.shape, bool)
    mask[2:2 + shape[0], 3:3 + shape[1]] = False
    assert np.all(big[mask] == sentinel), "kernel wrote outside out"


def np_quant_rows(a):
    """The documented dynamic per-row quantization, emulated in float32."""
    a = a.astype(np.float32)
    lo = np.minimum(a.min(axis=1), 0).astype(np.float32)
    hi = np.maximum(a.max(axis=1), 0).astype(np.float32)
    scale = ((hi - lo) / np.float32(255)).astype(np.float32)
    degenerate = ~(scale > 0)
    scale = np.where(degenerate, np.float32(1), scale).astype(np.float32)
    inv = (np.float32(1) / scale).astype(np.float32)
    zero = np.clip(np.rint((-lo * inv).astype(np.float32)), 0, 255).astype(np.int32)
    zero = np.where(degenerate, 0, zero).astype(np.int32)
    t = np.rint((a * inv[:, None]).astype(np.float32)) + zero[:, None].astype(np.float32)
    return np.clip(t, 0, 255).astype(np.uint8), scale, zero


def rand_w(rng, n, k):
    return rng.integers(-128, 128, (n, k), dtype=np.int8)


# ---- exact int32 accumulators ----------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_acc_exact(isa, m, n, k):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    wq = rand_w(rng, n, k)
    p = K.q8_pack(wq, isa=isa)
    assert p.isa == isa and p.N == n and p.K == k and p.Kp % 4 == 0
    for za in ZEROS:
        aq = rng.integers(0, 256, (m, k), dtype=np.uint8)
        big, out = guarded((m, n), np.int32, SENT_I)
        r = p.run_acc(aq, za, out=out)
        ref = (aq.astype(np.int64) - za) @ wq.astype(np.int64).T
        assert r is not None
        np.testing.assert_array_equal(out.astype(np.int64), ref)
        check_guard(big, (m, n), SENT_I)


@pytest.mark.parametrize("isa", ISAS)
def test_acc_extremes_and_strided(isa):
    # Largest products (255 * -128) everywhere, strided A (lda > K, K a multiple of 4 -> in-place path).
    for k in (64, 67):
        wq = np.full((5, k), -128, np.int8)
        wq[1] = 127
        base = np.full((9, k + 13), 255, np.uint8)
        aq = base[:, :k]
        p = K.q8_pack(wq, isa=isa)
        for za in (0, 255):
            ref = (aq.astype(np.int64) - za) @ wq.astype(np.int64).T
            np.testing.assert_array_equal(p.run_acc(aq, za), ref)


@pytest.mark.parametrize("isa", ISAS)
def test_acc_k_limit(isa):
    # K = 65536 is the documented bound: the worst case must still be exact...
    k = 65536
    wq = np.full((2, k), -128, np.int8)
    wq[1] = 127
    aq = np.full((2, k), 255, np.uint8)
    p = K.q8_pack(wq, isa=isa)
    ref = aq.astype(np.int64) @ wq.astype(np.int64).T
    assert ref.min() == -k * 255 * 128
    np.testing.assert_array_equal(p.run_acc(aq, 0), ref)
    # ... and anything longer is refused.
    with pytest.raises(core.InputError):
        K.q8_pack(np.zeros((1, k + 1), np.int8), isa=isa)


@pytest.mark.parametrize("isa", ISAS)
def test_threads_bitwise(isa):
    rng = np.random.default_rng(5)
    m, n, k = 70, 200, 300
    wq = rand_w(rng, n, k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    ws = (rng.random(n) * 0.01).astype(np.float32)
    p = K.q8_pack(wq, isa=isa)
    y1 = p.run_dynamic(a, ws, act="gelu", threads=1)
    y2 = p.run_dynamic(a, ws, act="gelu", threads=2)
    assert np.array_equal(y1.view(np.int32), y2.view(np.int32))


# ---- quantization helpers -----------------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k", [(1, 1), (3, 7), (5, 16), (4, 17), (9, 33), (2, 100), (3, 1000)])
def test_quantize_rows_exact(isa, m, k):
    rng = np.random.default_rng(k)
    a = (rng.standard_normal((m, k)) * rng.choice([0.01, 1, 300], (m, 1))).astype(np.float32)
    a[0, :] = np.abs(a[0, :])  # an all-positive row: zero point 0
    if m > 2:
        a[2, :] = 0  # an all-zero row: degenerate range -> scale 1, zero 0
    q, s, z = K.quantize_rows_u8(a, isa=isa)
    qr, sr, zr = np_quant_rows(a)
    np.testing.assert_array_equal(s, sr)
    np.testing.assert_array_equal(z, zr)
    np.testing.assert_array_equal(q, qr)
    assert z[0] == 0
    if m > 2:
        assert s[2] == 1 and z[2] == 0 and not q[2].any()
    # Dequantized rows are within half a step of the input.
    deq = (q.astype(np.float64) - z[:, None]) * s[:, None]
    assert np.all(np.abs(deq - a) <= 0.5 * s[:, None] * (1 + 1e-5) + 1e-30)


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_u8_exact(isa):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(1001) * 40).astype(np.float32)
    x[:6] = [np.nan, np.inf, -np.inf, 0.5, 1.5, -0.5]  # NaN -> 0, saturation, ties to even
    scale, zero = 0.25, 100
    q = K.quantize_u8(x, scale, zero, isa=isa)
    inv = np.float32(1) / np.float32(scale)
    with np.errstate(invalid="ignore"):
        t = np.rint((x * inv).astype(np.float32)) + np.float32(zero)
        ref = np.where(np.isnan(t), 0, np.clip(t, 0, 255)).astype(np.uint8)
    np.testing.assert_array_equal(q, ref)
    assert q[0] == 0 and q[1] == 255 and q[2] == 0
    d = K.dequantize_u8(q, scale, zero)
    np.testing.assert_array_equal(d, ((q.astype(np.float32) - zero) * np.float32(scale)).astype(np.float32))
    with pytest.raises(core.InputError):
        K.quantize_u8(x, 0.0, 0, isa=isa)
    with pytest.raises(core.InputError):
        K.quantize_u8(x, 1.0, 256, isa=isa)


# ---- dynamic float GEMM ------------------------------------------------------------------------

def dyn_reference(a, wq, ws, bias, residual, act, alpha):
    q, s, z = np_quant_rows(a)
    acc = (q.astype(np.int64) - z[:, None]) @ wq.astype(np.int64).T
    lin = acc * (s[:, None].astype(np.float64) * ws[None, :])
    mag = np.abs(lin)
    if bias is not None:
        lin = lin + bias
        mag = mag + np.abs(bias)
    if residual is not None:
        lin = lin + residual
        mag = mag + np.abs(residual)
    return lin, mag


def check_float(y, lin, mag, act, alpha):
    ref = ref_act(lin, act, alpha)
    tol = 4e-7 * mag * 1.2 + ACT_RTOL[act] * np.abs(ref) * 2 + 1e-30
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= tol), f"max err {err.max()} (tol at argmax {tol.flat[err.argmax()]})"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_dynamic(isa, m, n, k):
    rng = np.random.default_rng(m + 31 * n + 7 * k)
    wq = rand_w(rng, n, k)
    ws = (rng.random(n) * 0.02 + 1e-3).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    a = (rng.standard_normal((m, k)) + 0.3).astype(np.float32)
    p = K.q8_pack(wq, isa=isa)
    for act, alpha in (("none", 0.0), ("relu6", 0.0), ("leaky_relu", 0.1), ("gelu", 0.0)):
        big, out = guarded((m, n), np.float32, SENT_F)
        p.run_dynamic(a, ws, bias=bias, act=act, alpha=alpha, out=out)
        lin, mag = dyn_reference(a, wq, ws, bias, None, act, alpha)
        check_float(out, lin, mag, act, alpha)
        check_guard(big, (m, n), SENT_F)


@pytest.mark.parametrize("isa", ISAS)
def test_dynamic_residual_strided_and_accuracy(isa):
    rng = np.random.default_rng(9)
    m, n, k = 23, 61, 203
    w = rng.standard_normal((n, k)).astype(np.float32)
    ws = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    wq = np.clip(np.rint(w / ws[:, None]), -127, 127).astype(np.int8)
    abig = rng.standard_normal((m, k + 5)).astype(np.float32)
    a = abig[:, 2:2 + k]  # row-strided view
    res = rng.standard_normal((m, n)).astype(np.float32)
    p = K.q8_pack(wq, isa=isa)
    for act in ("none", "silu"):
        y = p.run_dynamic(a, ws, residual=res, act=act, threads=2)
        lin, mag = dyn_reference(np.ascontiguousarray(a), wq, ws, None, res, act, 0.0)
        check_float(y, lin, mag, act, 0.0)
    # Against the fp32 product: int8 quantization error stays small (a sanity bound, not a kernel tolerance).
    y = p.run_dynamic(a, ws)
    exact = a.astype(np.float64) @ w.astype(np.float64).T
    assert np.linalg.norm(y - exact) / np.linalg.norm(exact) < 0.02


def test_inline_acts_bitwise_across_isas():
    rng = np.random.default_rng(3)
    m, n, k = 19, 53, 77
    wq = rand_w(rng, n, k)
    ws = (rng.random(n) * 0.01).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    a = rng.standard_normal((m, k)).astype(np.float32)
    aq = rng.integers(0, 256, (m, k), dtype=np.uint8)
    for act in INLINE_ACTS:
        outs = [K.q8_pack(wq, isa=i).run_dynamic(a, ws, bias=bias, act=act, alpha=0.2) for i in ISAS]
        outs_u8 = [K.q8_pack(wq, isa=i).run_static(aq, 0.02, 120, ws, bias=bias, act=act, alpha=0.2,
                                                   out_scale=0.05, out_zero=60) for i in ISAS]
        for o, ou in zip(outs[1:], outs_u8[1:]):
            assert np.array_equal(o.view(np.int32), outs[0].view(np.int32)), act
            assert np.array_equal(ou, outs_u8[0]), act


# ---- static quantization --------------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 17, 33), (8, 48, 64), (33, 100, 31), (65, 49, 130)])
def test_static_u8_and_f32(isa, m, n, k):
    rng = np.random.default_rng(k * 3 + n)
    wq = rand_w(rng, n, k)
    ws = (rng.random(n) * 0.01 + 1e-3).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    aq = rng.integers(0, 256, (m, k), dtype=np.uint8)
    a_scale, a_zero = 0.03, 131
    p = K.q8_pack(wq, isa=isa)
    acc = (aq.astype(np.int64) - a_zero) @ wq.astype(np.int64).T
    s64 = np.float64(np.float32(a_scale) * ws)  # the kernel's float product a_scale * w_scale
    lin = acc * s64 + bias
    mag = np.abs(acc * s64) + np.abs(bias)
    for act, alpha in (("none", 0.0), ("relu", 0.0), ("leaky_relu", 0.05), ("sigmoid", 0.0)):
        out_scale, out_zero = (0.004, 0) if act == "sigmoid" else (0.05, 97)
        big, out = guarded((m, n), np.uint8, SENT_U)
        p.run_static(aq, a_scale, a_zero, ws, bias=bias, act=act, alpha=alpha, out_scale=out_scale,
                     out_zero=out_zero, out=out)
        check_guard(big, (m, n), SENT_U)
        y = ref_act(lin, act, alpha)
        qref = np.clip(np.rint(y / out_scale) + out_zero, 0, 255)
        diff = np.abs(out.astype(np.int64) - qref)
        assert diff.max() <= 1 and np.count_nonzero(diff) <= max(1, diff.size // 100), act
        bigf, outf = guarded((m, n), np.float32, SENT_F)
        p.run_static_f32(aq, a_scale, a_zero, ws, bias=bias, act=act, alpha=alpha, out=outf)
        check_guard(bigf, (m, n), SENT_F)
        check_float(outf, lin, mag, act, alpha)


def test_errors():
    p = K.q8_pack(np.zeros((4, 8), np.int8))
    with pytest.raises(core.InputError):
        K.q8_pack(np.zeros((4, 8), np.float32))
    with pytest.raises(core.InputError):
        p.run_acc(np.zeros((2, 8), np.int8), 0)
    with pytest.raises(core.InputError):
        p.run_acc(np.zeros((2, 7), np.uint8), 0)
    with pytest.raises(core.InputError):
        p.run_acc(np.zeros((2, 8), np.uint8), 300)
    with pytest.raises(core.InputError):
        p.run_dynamic(np.zeros((2, 8), np.float32), np.ones(3, np.float32))
    with pytest.raises(core.InputError):
        p.run_static(np.zeros((2, 8), np.uint8), 1.0, 0, np.ones(4, np.float32), out_scale=0.0)
    with pytest.raises(core.InputError):
        p.run_dynamic(np.zeros((2, 8), np.float32), np.ones(4, np.float32), act="nope")


# ---- convolution ------------------------------------------------------------------------------

def conv_reference(x, wq, ws, bias, strides, dil, pads, groups):
    """Per-image quantization (documented rule), im2col in int64, exact accumulators -> float64."""
    n_, h, w_, c = x.shape
    o, kh, kw, cg = wq.shape
    q, s, z = np_quant_rows(x.reshape(n_, -1))
    q = q.reshape(x.shape).astype(np.int64)
    pt, pl, pb, pr = pads
    xp = np.empty((n_, h + pt + pb, w_ + pl + pr, c), np.int64)
    xp[:] = z[:, None, None, None]
    xp[:, pt:pt + h, pl:pl + w_, :] = q
    oh = (h + pt + pb - dil[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w_ + pl + pr - dil[1] * (kw - 1) - 1) // strides[1] + 1
    og = o // groups
    acc = np.zeros((n_, oh, ow, o), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dil[0]:i * dil[0] + strides[0] * (oh - 1) + 1:strides[0],
                       j * dil[1]:j * dil[1] + strides[1] * (ow - 1) + 1:strides[1], :]
            patch = patch - z[:, None, None, None]
            for g in range(groups):
                acc[..., g * og:(g + 1) * og] += patch[..., g * cg:(g + 1) * cg] @ \
                    wq[g * og:(g + 1) * og, i, j, :].astype(np.int64).T
    sc = s[:, None, None, None].astype(np.float64) * ws
    lin = acc * sc
    mag = np.abs(lin)
    if bias is not None:
        lin = lin + bias
        mag = mag + np.abs(bias)
    return lin, mag


CONVS = [  # (N, H, W, C, O, KH, KW, strides, dil, pads, groups)
    (1, 5, 6, 8, 16, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),    # 1x1 direct (C % 4 == 0)
    (2, 4, 3, 7, 9, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),     # 1x1 with odd C (gathered)
    (2, 7, 9, 3, 17, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (1, 11, 10, 5, 49, 3, 2, (2, 1), (1, 2), (1, 0, 2, 1), 1),
    (2, 9, 9, 12, 18, 3, 3, (2, 2), (1, 1), (0, 1, 1, 0), 3),   # grouped
    (1, 8, 8, 6, 6, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 6),     # depthwise
    (1, 20, 20, 4, 8, 5, 5, (1, 1), (1, 1), (2, 2, 2, 2), 1),   # several row blocks
    # Cg % 4 == 0: the VNNI implicit-im2col (indirect) path, with every panel width (nr 16/32/48/64)
    (2, 9, 10, 16, 64, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),  # nr 64, padding taps
    (1, 12, 11, 8, 32, 3, 3, (2, 2), (2, 1), (2, 1, 0, 2), 1),  # nr 32, dilation, uneven pads
    (1, 7, 7, 24, 40, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 2),   # groups, Cg 12, Og 20
    (1, 14, 13, 4, 16, 1, 1, (2, 2), (1, 1), (0, 0, 0, 0), 1),  # 1x1 stride 2 (one tap)
    (1, 12, 12, 8, 200, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),  # nr 16, two row blocks
    (1, 11, 11, 4, 144, 5, 5, (1, 1), (1, 1), (0, 0, 0, 0), 1),  # nr 48, no padding
    # few channels (the im2col of contiguous kernel rows: 21, 10, 6 and 2 bytes per row)
    (1, 16, 15, 3, 8, 7, 7, (2, 2), (1, 1), (3, 3, 3, 3), 1),   # a 7x7/2 stem
    (1, 9, 9, 2, 8, 5, 5, (1, 1), (1, 1), (2, 2, 2, 2), 1),
    (2, 8, 9, 3, 8, 2, 2, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    (1, 6, 7, 1, 8, 2, 2, (1, 1), (1, 1), (0, 1, 0, 1), 1),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cfg", CONVS)
def test_q8_conv2d(isa, cfg):
    n_, h, w_, c, o, kh, kw, strides, dil, pads, groups = cfg
    rng = np.random.default_rng(h * w_ + o)
    x = (rng.standard_normal((n_, h, w_, c)) + 0.2).astype(np.float32)
    x[-1] *= 5  # images of different ranges get different scales
    wq = rng.integers(-128, 128, (o, kh, kw, c // groups), dtype=np.int8)
    ws = (rng.random(o) * 0.01 + 1e-3).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    lin, mag = conv_reference(x, wq, ws, bias, strides, dil, pads, groups)
    for act in ("none", "relu", "tanh"):
        y = K.q8_conv2d_dynamic(x, wq, ws, bias=bias, strides=list(strides), dilations=list(dil), pads=list(pads),
                                groups=groups, act=act, isa=isa, threads=2)
        assert y.shape == lin.shape
        check_float(y, lin, mag, act, 0.0)
    # residual + preallocated output
    res = rng.standard_normal(lin.shape).astype(np.float32)
    out = np.full(lin.shape, SENT_F, np.float32)
    K.q8_conv2d_dynamic(x, wq, ws, strides=list(strides), dilations=list(dil), pads=list(pads), groups=groups,
                        residual=res, isa=isa, out=out)
    lin2, mag2 = conv_reference(x, wq, ws, None, strides, dil, pads, groups)
    check_float(out, lin2 + res, mag2 + np.abs(res), "none", 0.0)


@pytest.mark.parametrize("cfg", CONVS)
def test_q8_conv2d_bitwise_across_isas_and_threads(cfg):
    """Every ISA (scalar im2col reference, AVX2/AVX-512 im2col, VNNI implicit im2col) and every
    thread count gives the same bits: the int32 accumulators are exact and the epilogue identical."""
    n_, h, w_, c, o, kh, kw, strides, dil, pads, groups = cfg
    rng = np.random.default_rng(3 * h + o)
    x = (rng.standard_normal((n_, h, w_, c)) - 0.3).astype(np.float32)
    wq = rng.integers(-128, 128, (o, kh, kw, c // groups), dtype=np.int8)
    ws = (rng.random(o) * 0.01 + 1e-3).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    kw_args = dict(bias=bias, strides=list(strides), dilations=list(dil), pads=list(pads), groups=groups, act="relu")
    ref = K.q8_conv2d_dynamic(x, wq, ws, isa="scalar", threads=1, **kw_args)
    for isa in ISAS:
        for t in (1, 2, 3):
            y = K.q8_conv2d_dynamic(x, wq, ws, isa=isa, threads=t, **kw_args)
            assert np.array_equal(y.view(np.int32), ref.view(np.int32)), (isa, t)


@pytest.mark.parametrize("isa", ISAS)
def test_residual_in_place_and_conv_threads(isa):
    rng = np.random.default_rng(17)
    m, n, k = 13, 50, 40
    wq = rand_w(rng, n, k)
    ws = (rng.random(n) * 0.01).astype(np.float32)
    a = rng.standard_normal((m, k)).astype(np.float32)
    p = K.q8_pack(wq, isa=isa)
    y = rng.standard_normal((m, n)).astype(np.float32)
    expect = p.run_dynamic(a, ws, residual=y.copy(), act="relu")
    p.run_dynamic(a, ws, residual=y, act="relu", out=y)  # residual is exactly the output
    assert np.array_equal(y, expect)
    x = rng.standard_normal((2, 13, 11, 6)).astype(np.float32)
    wc = rng.integers(-128, 128, (20, 3, 3, 6), dtype=np.int8)
    wsc = (rng.random(20) * 0.01).astype(np.float32)
    y1 = K.q8_conv2d_dynamic(x, wc, wsc, pads=[1, 1, 1, 1], act="gelu", isa=isa, threads=1)
    y2 = K.q8_conv2d_dynamic(x, wc, wsc, pads=[1, 1, 1, 1], act="gelu", isa=isa, threads=2)
    assert np.array_equal(y1.view(np.int32), y2.view(np.int32))


# ---- activations in the epilogue, row blocks, 64-wide quantization ------------------------------------

def _ref_act_ext(x, act, alpha=0.0):
    x = np.asarray(x, np.float64)
    if act == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if act == "hard_swish":
        return x * np.clip(x + 3, 0, 6) / 6
    if act == "hard_sigmoid":
        return np.clip(x + 3, 0, 6) / 6
    if act == "elu":
        return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0)))
    return ref_act(x, act, alpha)


ALL_ACTS = [("none", 0.0), ("relu", 0.0), ("relu6", 0.0), ("leaky_relu", 0.1), ("sigmoid", 0.0), ("tanh", 0.0),
            ("gelu", 0.0), ("gelu_tanh", 0.0), ("silu", 0.0), ("hard_swish", 0.0), ("elu", 0.7),
            ("hard_sigmoid", 0.0)]
EXT_RTOL = dict(ACT_RTOL, gelu_tanh=1e-5, hard_swish=1e-6, hard_sigmoid=1e-6, elu=1e-6)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 5), (7, 15, 33), (6, 16, 64), (13, 47, 20), (9, 48, 31), (5, 49, 8),
                                   (14, 63, 17), (12, 64, 40), (25, 65, 12), (3, 130, 9)])
def test_dynamic_every_act_in_epilogue(isa, m, n, k):
    """Every activation (applied in registers by the AVX-512 / VNNI epilogue, by apply_act elsewhere) gives
    exactly apply_act(isa) of the activation-free result, with bias and residual, at panel edges (16/48/64)."""
    rng = np.random.default_rng(m * 7 + n * 3 + k)
    wq = rand_w(rng, n, k)
    ws = (rng.random(n) * 0.004 + 1e-4).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    res = rng.standard_normal((m, n)).astype(np.float32)
    a = (rng.standard_normal((m, k)) * 2 - 0.2).astype(np.float32)
    p = K.q8_pack(wq, isa=isa)
    lin_y = p.run_dynamic(a, ws, bias=bias, residual=res)
    lin, mag = dyn_reference(a, wq, ws, bias, res, "none", 0.0)
    for act, alpha in ALL_ACTS:
        big, out = guarded((m, n), np.float32, SENT_F)
        p.run_dynamic(a, ws, bias=bias, residual=res, act=act, alpha=alpha, out=out, threads=2)
        check_guard(big, (m, n), SENT_F)
        expect = K.apply_act(lin_y, act, alpha, isa=isa)
        assert np.array_equal(out.view(np.int32), expect.view(np.int32)), act
        ref = _ref_act_ext(lin, act, alpha)
        # the linear part's error times |act'| (<= 1.5 for all of these), plus the activation's own error
        tol = 4e-7 * mag * 1.2 * 1.5 + EXT_RTOL[act] * np.abs(ref) * 2 + 1e-30
        err = np.abs(out.astype(np.float64) - ref)
        assert np.all(err <= tol), (act, err.max())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k", [(100, 4000), (700, 384), (341, 1536)])
def test_row_blocks_exact(isa, m, k):
    """M spanning several L2 row blocks of the driver (about 128 KB of A each), with a partial last tile:
    exact accumulators and float output, threads 1 and 2 bit-identical."""
    rng = np.random.default_rng(m + k)
    n = 70
    wq = rand_w(rng, n, k)
    aq = rng.integers(0, 256, (m, k), dtype=np.uint8)
    p = K.q8_pack(wq, isa=isa)
    ref = (aq.astype(np.int64) - 37) @ wq.astype(np.int64).T
    for t in (1, 2):
        big, out = guarded((m, n), np.int32, SENT_I)
        p.run_acc(aq, 37, out=out, threads=t)
        np.testing.assert_array_equal(out.astype(np.int64), ref)
        check_guard(big, (m, n), SENT_I)
    a = rng.standard_normal((m, k)).astype(np.float32)
    ws = (rng.random(n) * 0.01 + 1e-3).astype(np.float32)
    y1 = p.run_dynamic(a, ws, act="gelu", threads=1)
    y2 = p.run_dynamic(a, ws, act="gelu", threads=2)
    assert np.array_equal(y1.view(np.int32), y2.view(np.int32))
    lin, mag = dyn_reference(a, wq, ws, None, None, "gelu", 0.0)
    check_float(y1, lin, mag, "gelu", 0.0)


@pytest.mark.parametrize("isa", ISAS)
def test_quantize_u8_blocks_of_64_exact(isa):
    """Special values at every position of the 64-wide blocks and the masked tail: NaN -> 0, +-inf and huge
    values saturate, the 511.5 / 512.5 / 255.5 / -0.5 boundaries, ties to even."""
    scale, zero = 0.5, 3
    inv = np.float32(1) / np.float32(scale)
    specials = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 3e9, -3e9, 255.75, 256.25, -0.25, -1.75, 0.25,
                         0.75, 126.0, 126.25, 126.5, -1.5, -2.5, 2 ** 31, -2 ** 31, 1e-40], np.float32)
    for n in (64, 65, 127, 128, 200):
        for shift in (0, 13, 45, 63):
            x = np.random.default_rng(n + shift).standard_normal(n).astype(np.float32) * 200
            pos = (np.arange(len(specials)) * 7 + shift) % n
            x[pos] = specials[:len(pos)]
            q = K.quantize_u8(x, scale, zero, isa=isa)
            with np.errstate(invalid="ignore", over="ignore"):
                t = np.rint((x * inv).astype(np.float32)) + np.float32(zero)
                ref = np.where(np.isnan(t), 0, np.clip(t, 0, 255)).astype(np.uint8)
            np.testing.assert_array_equal(q, ref, err_msg=f"n={n} shift={shift}")
    # Rows long enough for the 64-wide loop, with per-row parameters.
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((6, 300)) * rng.choice([0.01, 1, 300], (6, 1))).astype(np.float32)
    q, s, z = K.quantize_rows_u8(a, isa=isa, threads=2)
    qr, sr, zr = np_quant_rows(a)
    np.testing.assert_array_equal(s, sr)
    np.testing.assert_array_equal(z, zr)
    np.testing.assert_array_equal(q, qr)

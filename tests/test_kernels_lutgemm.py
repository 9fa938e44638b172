"""Codebook (kernels.LutMatrix) and log2 (kernels.Log2Matrix) GEMM and conv2d against float64
numpy, on every supported ISA, with the weights built by slimrt.formats (so the kernels and the
storage formats are checked to agree).

Tolerance (fp32 accumulation, any summation order):
  |y - ref| <= 4e-7 * (sqrt(K) + 4) * mag + 1e-30,   mag = |x| @ |W|.T * |scale| + |bias| + |residual|
Every output goes into a view of a larger sentinel-filled array; the sentinels must survive.
"""
import math

import numpy as np
import pytest

from slimrt import formats
from slimrt._native import core

K = core.kernels
ISAS = core.cpu_info()["supported_isas"]
SENT = np.float32(-7777.0)


def guarded(m, n):
    buf = np.full((m + 2, n + 5), SENT, np.float32)
    return buf, buf[1:m + 1, 2:n + 2]


def check_guard(buf, m, n):
    inner = np.zeros(buf.shape, bool)
    inner[1:m + 1, 2:n + 2] = True
    assert np.all(buf[~inner] == SENT), "a sentinel around out was overwritten"


def tol(x, wd, extra=0.0):
    mag = np.abs(x.astype(np.float64)) @ np.abs(wd.astype(np.float64)).T + extra
    return 4e-7 * (math.sqrt(max(wd.shape[1], 1)) + 4) * mag + 1e-30


def codebook(rng, n, k, bits, per_row, lut_size=None):
    size = lut_size or (1 << bits)
    idx = rng.integers(0, size, (n, k))
    lut = rng.standard_normal((n if per_row else 1, size)).astype(np.float32)
    t = formats.Codebook(idx, lut, bits, axis=0 if per_row else -1, shape=(n, k))
    return t, K.LutMatrix


SHAPES = [(1, 1, 1), (1, 17, 33), (2, 16, 15), (3, 7, 64), (4, 31, 65), (5, 8, 100), (8, 33, 17),
          (9, 64, 31), (16, 65, 7), (17, 3, 129), (33, 100, 16), (64, 17, 257), (65, 40, 50), (100, 33, 3)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M%dN%dK%d" % s)
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
def test_codebook(isa, shape, bits):
    m, n, k = shape
    rng = np.random.default_rng(m * 7 + n * 3 + k + bits)
    per_row = bool((m + bits) % 2)
    size = max(1, (1 << bits) - (bits % 3))  # some codebooks smaller than 2^bits
    t, _ = codebook(rng, n, k, bits, per_row, size)
    a = K.LutMatrix(t.packed, t.lut, bits, n, k, per_row, isa=isa)
    assert (a.N, a.K, a.bits, a.per_row, a.isa) == (n, k, bits, per_row, isa)
    x = rng.standard_normal((m, k)).astype(np.float32)
    buf, out = guarded(m, n)
    y = a.run(x, out=out)
    assert y.shape == (m, n)
    wd = t.to_dense()
    ref = x.astype(np.float64) @ wd.T.astype(np.float64)
    assert np.all(np.abs(out - ref) <= tol(x, wd))
    check_guard(buf, m, n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(1, 33, 64), (3, 16, 31), (7, 65, 100), (64, 40, 129)],
                         ids=lambda s: "M%dN%dK%d" % s)
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("per_row", [True, False])
def test_log2(isa, shape, bits, per_row):
    m, n, k = shape
    rng = np.random.default_rng(n * k + bits)
    codes = rng.integers(0, 1 << bits, (n, k))
    scale = (rng.random(n if per_row else 1) + 0.25).astype(np.float32)
    t = formats.Log2(codes, scale, bits, axis=0 if per_row else -1, shape=(n, k))
    a = K.Log2Matrix(t.packed, t.scale, bits, n, k, isa=isa)
    x = rng.standard_normal((m, k)).astype(np.float32)
    buf, out = guarded(m, n)
    a.run(x, out=out)
    wd = t.to_dense()
    ref = x.astype(np.float64) @ wd.T.astype(np.float64)
    assert np.all(np.abs(out - ref) <= tol(x, wd))
    check_guard(buf, m, n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 6, 33])
@pytest.mark.parametrize("act", ["none", "relu", "sigmoid"])
def test_lut_epilogue(isa, m, act):
    n, k = 29, 47
    rng = np.random.default_rng(m)
    t, _ = codebook(rng, n, k, 4, True)
    a = K.LutMatrix(t.packed, t.lut, 4, n, k, True, isa=isa)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    scale = rng.random(n).astype(np.float32) + 0.5
    res = rng.standard_normal((m, n)).astype(np.float32)
    buf, out = guarded(m, n)
    a.run(x, bias=bias, scale=scale, residual=res, act=act, out=out)
    lin = (x.astype(np.float64) @ t.to_dense().T.astype(np.float64)) * scale + bias + res
    ref = {"none": lin, "relu": np.maximum(lin, 0), "sigmoid": 1 / (1 + np.exp(-lin))}[act]
    t_lin = tol(x, t.to_dense()) * scale + 1e-6 * (np.abs(bias) + np.abs(res))
    assert np.all(np.abs(out - ref) <= t_lin + 1e-6 * np.abs(ref))
    check_guard(buf, m, n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 13])
def test_lut_threads_bitwise(isa, m):
    rng = np.random.default_rng(2)
    t, _ = codebook(rng, 203, 300, 4, False)
    a = K.LutMatrix(t.packed, t.lut, 4, 203, 300, False, isa=isa)
    x = rng.standard_normal((m, 300)).astype(np.float32)
    assert np.array_equal(a.run(x, threads=1), a.run(x, threads=2))


def test_lut_strided_x():
    rng = np.random.default_rng(9)
    t, _ = codebook(rng, 20, 40, 4, False)
    a = K.LutMatrix(t.packed, t.lut, 4, 20, 40, False)
    big = rng.standard_normal((6, 50)).astype(np.float32)
    x = big[:, 3:43]
    ref = x.astype(np.float64) @ t.to_dense().T.astype(np.float64)
    assert np.all(np.abs(a.run(x) - ref) <= tol(x, t.to_dense()))


def test_lut_storage_is_compressed():
    rng = np.random.default_rng(1)
    t, _ = codebook(rng, 256, 512, 4, False)
    a = K.LutMatrix(t.packed, t.lut, 4, 256, 512, False)
    assert a.storage_bits == 4
    assert a.nbytes <= 256 * 512 // 2 + 4096  # 4 bits per weight + one table


def test_lut_errors():
    rng = np.random.default_rng(0)
    t, _ = codebook(rng, 4, 8, 4, False)
    with pytest.raises(core.InputError):
        K.LutMatrix(t.packed, t.lut[:, :3], 4, 4, 8, False)  # indices >= codebook size
    with pytest.raises(core.InputError):
        K.LutMatrix(t.packed[:-1], t.lut, 4, 4, 8, False)  # too few bytes
    with pytest.raises(core.InputError):
        K.LutMatrix(t.packed, t.lut, 4, 4, 8, True)  # per-row lut needs N rows
    with pytest.raises(core.InputError):
        K.Log2Matrix(t.packed, np.ones(3, np.float32), 4, 4, 8)  # scale neither 1 nor N
    a = K.LutMatrix(t.packed, t.lut, 4, 4, 8, False)
    with pytest.raises(core.InputError):
        a.run(np.zeros((2, 7), np.float32))


def ref_conv(x, w, strides, dil, pads, groups):
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    sh, sw = strides
    dh, dw = dil
    pt, pl, pb, pr = pads
    xp = np.zeros((n, h + pt + pb, wd + pl + pr, c))
    xp[:, pt:pt + h, pl:pl + wd] = x
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    y = np.zeros((n, oh, ow, o))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw,
                           g * cg:(g + 1) * cg]
                y[..., g * og:(g + 1) * og] += patch @ w[g * og:(g + 1) * og, i, j, :].T
    return y


CONVS = [  # (N, H, W, C, O, KH, KW, strides, dil, pads, groups)
    (1, 5, 6, 8, 12, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    (2, 7, 5, 6, 9, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (1, 9, 8, 4, 8, 3, 2, (2, 1), (1, 2), (0, 1, 2, 0), 2),
    (1, 17, 15, 3, 5, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1), 1),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("kind", ["codebook", "log2"])
@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: "x".join(map(str, c[:7])))
def test_lut_conv2d(isa, kind, cfg):
    n, h, wd, c, o, kh, kw, st, dl, pd, g = cfg
    rng = np.random.default_rng(h * wd + o)
    x = rng.standard_normal((n, h, wd, c)).astype(np.float32)
    kc = kh * kw * (c // g)
    if kind == "codebook":
        t, _ = codebook(rng, o, kc, 4, True)
        a = K.LutMatrix(t.packed, t.lut, 4, o, kc, True, isa=isa)
    else:
        t = formats.Log2(rng.integers(0, 8, (o, kc)), (rng.random(o) + 0.5).astype(np.float32), 3, axis=0,
                         shape=(o, kc))
        a = K.Log2Matrix(t.packed, t.scale, 3, o, kc, isa=isa)
    w4 = t.to_dense().reshape(o, kh, kw, c // g).astype(np.float64)
    bias = rng.standard_normal(o).astype(np.float32)
    ref = ref_conv(x.astype(np.float64), w4, st, dl, pd, g) + bias
    y = a.conv2d(x, kh, kw, strides=list(st), dilations=list(dl), pads=list(pd), groups=g, bias=bias)
    mag = ref_conv(np.abs(x).astype(np.float64), np.abs(w4), st, dl, pd, g)
    assert np.all(np.abs(y - ref) <= 4e-7 * (math.sqrt(kc) + 4) * (mag + np.abs(bias)) + 1e-30)

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

import slimrt
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


# ---- int8-table LUT GEMM (kernels.LutQ8Matrix, lutq8.h) ------------------------------------------
# Integer accumulators (run_acc) must equal the numpy int64 reference exactly. Float outputs are
# checked against the float64 evaluation of the kernel's dequantized equation
#   y = act(acc * a_scale[m] * row_scale[n] * scale[n] + bias + residual),
#   acc = sum_k (Aq - a_zero) * Wq,  (Aq, a_scale, a_zero) = kernels.quantize_rows_u8(x)
# within 1e-6 * (|acc * a_scale * row_scale * scale| + |bias| + |residual|) (float(acc) and three
# float32 products / sums, each <= 2^-24 relative) plus the activation's own rounding.

Q8_ISAS = [i for i in ISAS if K.LutQ8Matrix.has_kernel(i)]
NO_Q8_ISAS = [i for i in ISAS if not K.LutQ8Matrix.has_kernel(i)]
DIMS = [1, 3, 4, 5, 15, 16, 17, 31, 33, 63, 64, 65, 97]


def q8_codebook(rng, n, k, bits, per_row, lut_size=None):
    size = lut_size or (1 << bits)
    idx = rng.integers(0, size, (n, k))
    lut = rng.integers(-128, 128, (n if per_row else 1, size)).astype(np.int8)
    return formats.Codebook(idx, lut, bits, axis=0 if per_row else -1, shape=(n, k))


def q8_log2(rng, n, k, bits, per_row):
    codes = rng.integers(0, 1 << bits, (n, k))
    scale = (rng.random(n if per_row else 1) + 0.25).astype(np.float32)
    return formats.Log2(codes, scale, bits, axis=0 if per_row else -1, shape=(n, k))


def int_weights(t):
    """(Wq int64 [N, K], row scale float64 [N]) with to_dense() == Wq * row_scale exactly."""
    n = t.shape[0]
    if isinstance(t, formats.Log2):
        s = np.broadcast_to(t.scale.astype(np.float64), (n,)) if t.scale.size == 1 else t.scale.astype(np.float64)
        wq = np.rint(t.to_dense().astype(np.float64) / s[:, None] * 64).astype(np.int64)
        return wq, s / 64
    return t.to_dense().astype(np.int64), np.ones(n)


def make_q8(t, isa):
    n, k = t.shape
    if isinstance(t, formats.Log2):
        return K.LutQ8Matrix.log2(t.packed, t.scale, t.bits, n, k, isa=isa)
    return K.LutQ8Matrix.codebook(t.packed, t.lut, t.bits, n, k, t.axis == 0, isa=isa)


def q8_reference(x, wq, rs, scale=None, bias=None, res=None):
    q, s, z = K.quantize_rows_u8(np.ascontiguousarray(x), isa="scalar")
    acc = (q.astype(np.int64) - z[:, None]) @ wq.T
    lin = acc * s[:, None].astype(np.float64) * rs[None, :]
    if scale is not None:
        lin = lin * scale
    mag = np.abs(lin)
    for v in (bias, res):
        if v is not None:
            lin = lin + v
            mag = mag + np.abs(v)
    return lin, mag


def acc_guarded(m, n):
    buf = np.full((m + 2, n + 5), -123456789, np.int32)
    return buf, buf[1:m + 1, 2:n + 2]


@pytest.mark.parametrize("isa", Q8_ISAS)
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("per_row", [True, False])
def test_lutq8_codebook_acc_exact(isa, bits, per_row):
    rng = np.random.default_rng(bits * 2 + per_row)
    for m, n, k in [(d, DIMS[(i * 5 + bits) % len(DIMS)], DIMS[(i * 7 + 3) % len(DIMS)])
                    for i, d in enumerate(DIMS)] + [(7, 13, 257), (2, 37, 131), (11, 19, 1031)]:
        t = q8_codebook(rng, n, k, bits, per_row, lut_size=max(1, (1 << bits) - (k % 2)))
        a = make_q8(t, isa)
        assert (a.N, a.K, a.bits, a.per_row, a.isa) == (n, k, bits, per_row, isa)
        wq, _ = int_weights(t)
        np.testing.assert_array_equal(a.rowsum, wq.sum(1))
        aq = rng.integers(0, 256, (m, k)).astype(np.uint8)
        for z in (0, 77, 255):
            buf, out = acc_guarded(m, n)
            a.run_acc(aq, z, threads=2, out=out)
            np.testing.assert_array_equal(out, (aq.astype(np.int64) - z) @ wq.T, err_msg=f"M{m} N{n} K{k} z{z}")
            assert np.all(buf[0] == -123456789) and np.all(buf[-1] == -123456789)
            assert np.all(buf[:, :2] == -123456789) and np.all(buf[:, n + 2:] == -123456789)


@pytest.mark.parametrize("isa", Q8_ISAS)
@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("per_row", [True, False])
def test_lutq8_log2_exact_table(isa, bits, per_row):
    rng = np.random.default_rng(40 + bits)
    for m, n, k in [(1, 1, 1), (4, 16, 64), (5, 17, 65), (33, 31, 63), (3, 65, 97)]:
        t = q8_log2(rng, n, k, bits, per_row)
        a = make_q8(t, isa)
        wq, rs = int_weights(t)
        # the int8 table times the row scale IS the format's weight, bit for bit
        assert np.array_equal(a.table[:, :1 << bits].astype(np.float64) * a.row_scale[:, None].astype(np.float64),
                              np.array([[0.0] + [(-1.0 if c >> (bits - 1) else 1.0) * s * 2.0 ** (1 - (c & ((1 << (bits - 1)) - 1)))
                                          for c in range(1, 1 << bits)] for s in np.broadcast_to(t.scale, (n,))]))
        np.testing.assert_array_equal(a.row_scale.astype(np.float64), rs)
        aq = rng.integers(0, 256, (m, k)).astype(np.uint8)
        np.testing.assert_array_equal(a.run_acc(aq, 128), (aq.astype(np.int64) - 128) @ wq.T)


HAS_VBMI = bool(core.cpu_info()["features"].get("avx512vbmi"))
VNNI_ISAS = [i for i in Q8_ISAS if i != "scalar"]


@pytest.mark.parametrize("isa", VNNI_ISAS)
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["codebook", "log2"])
def test_lutq8_vbmi_and_vpshufb_decodes_agree(isa, bits, kind):
    """A table shared by every row runs the vpermb decode where the CPU has AVX512_VBMI (garbage index
    bits above the code select copies of the table); per-row tables the vpshufb one. Both give the
    exact integer products, for every code width and awkward shapes."""
    if kind == "log2" and bits < 2:
        pytest.skip("log2 needs 2+ bits")
    rng = np.random.default_rng(60 + bits)
    for m, n, k in [(1, 1, 1), (1, 33, 129), (2, 17, 255), (3, 64, 1031), (5, 13, 64), (4, 97, 300)]:
        for per_row in (False, True):
            t = q8_codebook(rng, n, k, bits, per_row) if kind == "codebook" else q8_log2(rng, n, k, bits, per_row)
            a = make_q8(t, isa)
            shared = kind == "log2" or not per_row
            assert a.vbmi == (shared and HAS_VBMI)
            wq, _ = int_weights(t)
            aq = rng.integers(0, 256, (m, k)).astype(np.uint8)
            want = (aq.astype(np.int64) - 3) @ wq.T
            np.testing.assert_array_equal(a.run_acc(aq, 3, threads=2), want)
            a.vbmi = False
            np.testing.assert_array_equal(a.run_acc(aq, 3, threads=2), want)
            if not shared or not HAS_VBMI:
                with pytest.raises(slimrt.InputError, match="vbmi"):
                    a.vbmi = True


@pytest.mark.parametrize("isa", Q8_ISAS)
@pytest.mark.parametrize("m", DIMS)
@pytest.mark.parametrize("kind", ["codebook", "log2"])
def test_lutq8_run(isa, m, kind):
    rng = np.random.default_rng(m + (kind == "log2"))
    for n, k in [(DIMS[(m + 3) % len(DIMS)], DIMS[(m * 3) % len(DIMS)]), (13, 101), (64, 65)]:
        per_row = bool((n + k) % 2)
        bits = 1 + (n + m) % 4 if kind == "codebook" else 2 + (n + m) % 3
        t = q8_codebook(rng, n, k, bits, per_row) if kind == "codebook" else q8_log2(rng, n, k, bits, per_row)
        a = make_q8(t, isa)
        x = (rng.standard_normal((m, k)) + 0.2).astype(np.float32)
        if m > 2:
            x[1] = 0.0  # an all-zero activation row (scale 1, zero point 0)
        wq, rs = int_weights(t)
        buf, out = guarded(m, n)
        y = a.run(x, out=out, threads=2)
        assert y.shape == (m, n)
        lin, mag = q8_reference(x, wq, rs)
        assert np.all(np.abs(out - lin) <= 1e-6 * mag + 1e-30)
        check_guard(buf, m, n)
        if m > 2:
            assert np.all(out[1] == 0)


@pytest.mark.parametrize("isa", Q8_ISAS)
@pytest.mark.parametrize("m", [1, 6, 33])
@pytest.mark.parametrize("act", ["none", "relu", "sigmoid"])
def test_lutq8_epilogue(isa, m, act):
    n, k = 29, 47
    rng = np.random.default_rng(m + 100)
    t = q8_codebook(rng, n, k, 4, True)
    a = make_q8(t, isa)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    scale = (rng.random(n) * 0.01 + 0.005).astype(np.float32)
    res = rng.standard_normal((m, n)).astype(np.float32)
    buf, out = guarded(m, n)
    a.run(x, bias=bias, scale=scale, residual=res, act=act, out=out)
    wq, rs = int_weights(t)
    lin, mag = q8_reference(x, wq, rs, scale, bias, res)
    ref = {"none": lin, "relu": np.maximum(lin, 0), "sigmoid": 1 / (1 + np.exp(-lin))}[act]
    assert np.all(np.abs(out - ref) <= 1e-6 * mag + 1e-6 * np.abs(ref) + 1e-30)
    check_guard(buf, m, n)


def test_lutq8_zero_weight_rows():
    rng = np.random.default_rng(5)
    n, k = 9, 70
    idx = rng.integers(1, 16, (n, k))
    idx[[0, 4, 8]] = 0  # rows whose every weight is table entry 0 (= 0)
    lut = rng.integers(-128, 128, (1, 16)).astype(np.int8)
    lut[0, 0] = 0
    t = formats.Codebook(idx, lut, 4, shape=(n, k))
    for isa in Q8_ISAS:
        a = make_q8(t, isa)
        x = rng.standard_normal((5, k)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        y = a.run(x, bias=bias)
        assert np.all(y[:, [0, 4, 8]] == bias[[0, 4, 8]])


@pytest.mark.parametrize("isa", Q8_ISAS)
def test_lutq8_float_codebook_variant(isa):
    # float centroids rounded to int8 per table: |w - row_scale * Wq| <= max|lut row| / 254
    rng = np.random.default_rng(8)
    n, k, m = 37, 90, 6
    for per_row in (True, False):
        t, _ = codebook(rng, n, k, 4, per_row)
        a = make_q8(t, isa)
        assert a.quantized
        amax = np.abs(t.lut).max(1).astype(np.float64)
        deq = a.table[:, :16].astype(np.float64) * a.row_scale[:, None].astype(np.float64)
        lut_rows = np.broadcast_to(t.lut.astype(np.float64), (n, 16))
        assert np.all(np.abs(deq - lut_rows) <= np.broadcast_to(amax, (n,))[:, None] / 254 * (1 + 1e-6))
        x = rng.standard_normal((m, k)).astype(np.float32)
        wq = np.take_along_axis(a.table.astype(np.int64), t.indices.reshape(n, k).astype(np.int64), 1)
        lin, mag = q8_reference(x, wq, a.row_scale.astype(np.float64))
        assert np.all(np.abs(a.run(x) - lin) <= 1e-6 * mag + 1e-30)


@pytest.mark.parametrize("isa", Q8_ISAS)
@pytest.mark.parametrize("m", [1, 13, 64])
def test_lutq8_threads_bitwise(isa, m):
    rng = np.random.default_rng(2)
    t = q8_codebook(rng, 203, 300, 4, True)
    a = make_q8(t, isa)
    x = rng.standard_normal((m, 300)).astype(np.float32)
    y1 = a.run(x, threads=1)
    assert np.array_equal(y1, a.run(x, threads=2)) and np.array_equal(y1, a.run(x, threads=3))


@pytest.mark.parametrize("isa", Q8_ISAS)
def test_lutq8_matches_q8_dynamic(isa):
    # same quantizer and the same integer weights: the int8 GEMM gives the same accumulators,
    # hence the same outputs up to the order of two float products
    rng = np.random.default_rng(11)
    n, k, m = 70, 200, 9
    t = q8_log2(rng, n, k, 4, True)
    wq, rs = int_weights(t)
    p = K.q8_pack(wq.astype(np.int8), isa=isa)
    a = make_q8(t, isa)
    x = rng.standard_normal((m, k)).astype(np.float32)
    y8 = p.run_dynamic(x, rs.astype(np.float32))
    assert np.allclose(a.run(x), y8, rtol=1e-6, atol=1e-6 * np.abs(y8).max())


def test_lutq8_strided_x_and_storage():
    rng = np.random.default_rng(9)
    t = q8_codebook(rng, 20, 40, 4, False)
    a = make_q8(t, None)
    big = rng.standard_normal((6, 50)).astype(np.float32)
    x = big[:, 3:43]
    wq, rs = int_weights(t)
    lin, mag = q8_reference(x, wq, rs)
    assert np.all(np.abs(a.run(x) - lin) <= 1e-6 * mag + 1e-30)
    b = make_q8(q8_codebook(rng, 256, 512, 4, True), None)
    assert b.storage_bits == 4 and b.nbytes <= 256 * 512 // 2 + 256 * 24
    assert make_q8(q8_codebook(rng, 256, 512, 2, True), None).storage_bits == 2


def test_lutq8_errors():
    rng = np.random.default_rng(0)
    t = q8_codebook(rng, 4, 8, 4, False)
    with pytest.raises(core.InputError):
        K.LutQ8Matrix.codebook(t.packed, t.lut[:, :3], 4, 4, 8)  # indices >= codebook size
    with pytest.raises(core.InputError):
        K.LutQ8Matrix.codebook(t.packed, t.lut.astype(np.int16), 4, 4, 8)  # lut dtype
    with pytest.raises(core.InputError):
        K.LutQ8Matrix.codebook(t.packed, t.lut, 4, 4, 8, True)  # per-row lut needs N rows
    t5 = formats.Codebook(rng.integers(0, 32, (4, 8)), np.zeros((1, 32), np.int8), 5, shape=(4, 8))
    with pytest.raises(core.InputError):
        K.LutQ8Matrix.codebook(t5.packed, t5.lut, 5, 4, 8)  # > 4 bits: the fp32-table kernel's job
    with pytest.raises(core.InputError):
        K.LutQ8Matrix.log2(t.packed, np.ones(3, np.float32), 4, 4, 8)  # scale neither 1 nor N
    big = formats.Codebook(np.zeros((1, 65537), np.int64), np.zeros((1, 2), np.int8), 1, shape=(1, 65537))
    with pytest.raises(core.InputError):
        K.LutQ8Matrix.codebook(big.packed, big.lut, 1, 1, 65537)  # int32 accumulators could overflow
    a = make_q8(t, None)
    with pytest.raises(core.InputError):
        a.run(np.zeros((2, 7), np.float32))
    with pytest.raises(core.InputError):
        a.run_acc(np.zeros((2, 8), np.uint8), 256)
    for isa in NO_Q8_ISAS:
        with pytest.raises(core.UnsupportedError):
            make_q8(t, isa)


@pytest.mark.parametrize("isa", Q8_ISAS)
@pytest.mark.parametrize("kind", ["codebook", "log2"])
@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: "x".join(map(str, c[:7])))
def test_lutq8_conv2d(isa, kind, cfg):
    n, h, wd, c, o, kh, kw, st, dl, pd, g = cfg
    rng = np.random.default_rng(h * wd + o + 1)
    x = rng.standard_normal((n, h, wd, c)).astype(np.float32)
    kc = kh * kw * (c // g)
    t = q8_codebook(rng, o, kc, 4, True) if kind == "codebook" else q8_log2(rng, o, kc, 3, True)
    a = make_q8(t, isa)
    wq, rs = int_weights(t)
    bias = rng.standard_normal(o).astype(np.float32)
    # reference: the same per-row quantization of the (zero-padded) im2col rows
    oh = (h + pd[0] + pd[2] - dl[0] * (kh - 1) - 1) // st[0] + 1
    ow = (wd + pd[1] + pd[3] - dl[1] * (kw - 1) - 1) // st[1] + 1
    xp = np.zeros((n, h + pd[0] + pd[2], wd + pd[1] + pd[3], c), np.float32)
    xp[:, pd[0]:pd[0] + h, pd[1]:pd[1] + wd] = x
    og, cg = o // g, c // g
    ref = np.zeros((n, oh, ow, o))
    mag = np.zeros((n, oh, ow, o))
    for gi in range(g):
        cols = np.stack([xp[:, i * dl[0]:i * dl[0] + st[0] * (oh - 1) + 1:st[0],
                            j * dl[1]:j * dl[1] + st[1] * (ow - 1) + 1:st[1], gi * cg:(gi + 1) * cg]
                         for i in range(kh) for j in range(kw)], axis=3).reshape(n * oh * ow, kc)
        lin, mg = q8_reference(cols, wq[gi * og:(gi + 1) * og], rs[gi * og:(gi + 1) * og],
                               bias=bias[gi * og:(gi + 1) * og])
        ref[..., gi * og:(gi + 1) * og] = lin.reshape(n, oh, ow, og)
        mag[..., gi * og:(gi + 1) * og] = mg.reshape(n, oh, ow, og)
    y = a.conv2d(x, kh, kw, strides=list(st), dilations=list(dl), pads=list(pd), groups=g, bias=bias, threads=2)
    assert np.all(np.abs(y - ref) <= 1e-6 * mag + 1e-30)

"""fp32 GEMM / conv2d / activation kernels (slimrt._core.kernels) against float64 numpy.

Tolerances (stated once, used everywhere):
  linear part   |y - ref| <= 1e-6 * (4 sqrt(K) + 4) * mag,   mag = |a| @ |w|.T * |scale| + |bias| + |residual|
  activations   apply_act: relative error <= ACT_RTOL[act] where |y| > 1e-30 (absolute 1e-37 below);
                fused:     L * linear tolerance + ACT_RTOL * |ref|   (L = the activation's Lipschitz bound)
Threads: results with threads=1 and threads=2 are required to be bitwise identical (the kernels fix the
K blocking and per-element summation order by M and K alone; threads only change who computes a tile).
"""
import math

import numpy as np
import pytest

from slimrt._native import core

K = core.kernels
ISAS = core.cpu_info()["supported_isas"]
ACTS = ["none", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu",
        "hard_swish", "elu", "hard_sigmoid"]
# Max relative error of each activation vs float64 (see csrc/kernels/gemm/sgemm.h).
ACT_RTOL = {"none": 0, "relu": 0, "relu6": 0, "leaky_relu": 1e-7, "hard_sigmoid": 2e-7, "hard_swish": 3e-7,
            "sigmoid": 1e-6, "tanh": 1e-6, "silu": 1e-6, "elu": 1e-6, "gelu": 1e-6, "gelu_tanh": 1e-5}
# gelu_tanh is tighter where it matters: its exponent 0.07 x^3 carries the rounding of x^3 for |x| > 5.
GELU_TANH_CORE_RTOL = 2e-6
# Lipschitz bounds (for alpha <= 1) used to carry the linear error through the activation.
ACT_LIP = {"none": 1, "relu": 1, "relu6": 1, "leaky_relu": 1, "hard_sigmoid": 0.17, "hard_swish": 1.5,
           "sigmoid": 0.25, "tanh": 1, "silu": 1.1, "elu": 1, "gelu": 1.13, "gelu_tanh": 1.13}
SENTINEL = np.float32(-7777.0)
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # stable on both sides
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def ref_act(x, act, alpha=0.0):
    x = np.asarray(x, np.float64)
    if act == "none":
        return x
    if act == "relu":
        return np.maximum(x, 0)
    if act == "relu6":
        return np.clip(x, 0, 6)
    if act == "leaky_relu":
        return np.where(x >= 0, x, alpha * x)
    if act == "sigmoid":
        return _sigmoid(x)
    if act == "tanh":
        return np.tanh(x)
    if act == "gelu":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if act == "gelu_tanh":
        # 0.5 x (1 + tanh(u)) == x sigmoid(2u), without the cancellation for x << 0
        return x * _sigmoid(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))
    if act == "silu":
        return x * _sigmoid(x)
    if act == "hard_swish":
        return x * np.clip(x + 3, 0, 6) / 6
    if act == "elu":
        return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0)))
    if act == "hard_sigmoid":
        return np.clip(x + 3, 0, 6) / 6
    raise ValueError(act)


def gelu_tail_ref(x):
    """gelu for very negative x without cancellation: 0.5 x erfc(-x/sqrt2)."""
    return np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in np.asarray(x, np.float64)])


def rand(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def lin_tol(k, mag):
    return 1e-6 * (4 * math.sqrt(k) + 4) * mag + 1e-30


def check_gemm(y, a, w, bias=None, scale=None, residual=None, act="none", alpha=0.0):
    a64, w64 = a.astype(np.float64), w.astype(np.float64)
    lin = a64 @ w64.T
    mag = np.abs(a64) @ np.abs(w64).T
    if scale is not None:
        lin = lin * scale
        mag = mag * np.abs(scale)
    if bias is not None:
        lin = lin + bias
        mag = mag + np.abs(bias)
    if residual is not None:
        lin = lin + residual
        mag = mag + np.abs(residual)
    ref = ref_act(lin, act, alpha)
    tol = ACT_LIP[act] * lin_tol(a.shape[1], mag) + ACT_RTOL[act] * np.abs(ref) + 1e-30
    err = np.abs(y.astype(np.float64) - ref)
    assert y.shape == ref.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    bad = err > tol
    assert not bad.any(), f"{bad.sum()} elements off, worst {np.max(err - tol)} at {np.argwhere(bad)[0]}"


def guarded_out(m, n, pad=(2, 3, 1, 5)):
    """A row-strided (m, n) view into a sentinel-filled buffer, and the buffer."""
    top, left, bottom, right = pad
    big = np.full((m + top + bottom, n + left + right), SENTINEL, np.float32)
    return big[top:top + m, left:left + n], big, (top, left)


def assert_guards(big, origin, shape):
    mask = np.ones(big.shape, bool)
    mask[origin[0]:origin[0] + shape[0], origin[1]:origin[1] + shape[1]] = False
    assert np.all(big[mask] == SENTINEL), "write outside the output view"


# ---------------------------------------------------------------------------------------------
# GEMM shapes: tile edges for both microkernels (MR 6/12, NR 16/32) and K blocking (KC 256).
SIZES = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 64, 100, 129]
SHAPES = sorted(set(
    [(m, 17, 31) for m in SIZES]
    + [(5, n, 33) for n in SIZES]
    + [(12, 33, k) for k in SIZES]
    + [(1, 1, 1), (1, 129, 257), (2, 64, 255), (13, 100, 256), (25, 31, 513), (129, 129, 129),
       (100, 33, 600), (64, 64, 64), (7, 3, 1000), (33, 1, 17), (1, 33, 600)]))


@pytest.mark.parametrize("isa", ISAS)
def test_sgemm_shapes(isa, rng):
    for (m, n, k) in SHAPES:
        a, w, b = rand(rng, m, k), rand(rng, n, k), rand(rng, n)
        out, big, org = guarded_out(m, n)
        y = K.sgemm(a, w, bias=b, isa=isa, out=out)
        assert y is out or np.shares_memory(y, big)
        check_gemm(out, a, w, bias=b)
        assert_guards(big, org, (m, n))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", [(17, 33, 31), (13, 40, 600), (1, 70, 300)])
def test_sgemm_epilogue_combos(isa, m, n, k, rng):
    a, w = rand(rng, m, k), rand(rng, n, k)
    for use_b in (False, True):
        for use_s in (False, True):
            for use_r in (False, True):
                b = rand(rng, n) if use_b else None
                s = (rng.random(n, dtype=np.float32) + 0.5) if use_s else None
                r = rand(rng, m, n) if use_r else None
                y = K.sgemm(a, w, bias=b, scale=s, residual=r, isa=isa)
                check_gemm(y, a, w, bias=b, scale=s, residual=r)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS)
def test_sgemm_fused_activation(isa, act, rng):
    alpha = {"leaky_relu": 0.1, "elu": 0.7}.get(act, 0.0)
    for (m, n, k) in [(13, 37, 20), (1, 45, 300), (25, 17, 260)]:
        a, w, b = rand(rng, m, k), rand(rng, n, k) * 0.3, rand(rng, n)
        s = rng.random(n, dtype=np.float32) + 0.5
        r = rand(rng, m, n)
        out, big, org = guarded_out(m, n)
        K.sgemm(a, w, bias=b, scale=s, residual=r, act=act, alpha=alpha, isa=isa, out=out)
        check_gemm(out, a, w, bias=b, scale=s, residual=r, act=act, alpha=alpha)
        assert_guards(big, org, (m, n))


@pytest.mark.parametrize("isa", ISAS)
def test_sgemm_threads_bitwise_identical(isa, rng):
    # (1, 1500, 1024): a GEMV big enough to split, one part per thread (run_affine), also with more
    # parts than the pool has threads
    for (m, n, k) in [(1, 300, 700), (1, 1500, 1024), (2, 129, 33), (40, 200, 520), (130, 70, 64), (64, 512, 300)]:
        a, w, b = rand(rng, m, k), rand(rng, n, k), rand(rng, n)
        p = K.PackedSgemm(w, isa=isa)
        y1 = p.run(a, bias=b, act="gelu", threads=1)
        check_gemm(y1, a, w, bias=b, act="gelu")
        for t in (2, 3, 5, 0):  # 0: the default thread count
            yt = p.run(a, bias=b, act="gelu", threads=t)
            assert np.array_equal(y1.view(np.uint32), yt.view(np.uint32)), t


@pytest.mark.parametrize("isa", ISAS)
def test_sgemm_strided_inputs_and_residual_in_place(isa, rng):
    m, n, k = 19, 40, 300
    abig = rand(rng, m, k + 7)
    a = abig[:, 3:3 + k]  # row-strided view
    w, b = rand(rng, n, k), rand(rng, n)
    r = rand(rng, m, n)
    # residual aliasing the output: the output is accumulated into (K spans two K blocks here)
    out, big, org = guarded_out(m, n)
    out[...] = r
    K.sgemm(a, w, bias=b, residual=out, act="relu", isa=isa, out=out, threads=2)
    check_gemm(out, np.ascontiguousarray(a), w, bias=b, residual=r, act="relu")
    assert_guards(big, org, (m, n))
    with pytest.raises(core.InputError):
        K.sgemm(a, w, scale=np.ones(n, np.float32), residual=out, isa=isa, out=out)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", [(37, 40, 100), (13, 24, 16), (130, 256, 300), (25, 17, 7)])
def test_sgemm_a_in_place_equals_packed(isa, m, n, k, rng):
    """A row-major A is read in place by the microkernel when N <= 256, unless its rows are a
    multiple of 4 KB apart (then it is packed): both paths give bitwise identical results."""
    w, b = rand(rng, n, k), rand(rng, n)
    p = K.PackedSgemm(w, isa=isa)
    wide = rand(rng, m, 1024)  # rows 4 KB apart: the packed path
    a = np.ascontiguousarray(wide[:, :k])
    y_in_place = p.run(a, bias=b, act="relu")
    y_packed = p.run(wide[:, :k], bias=b, act="relu")
    check_gemm(y_in_place, a, w, bias=b, act="relu")
    assert np.array_equal(y_in_place.view(np.uint32), y_packed.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
def test_packed_handle(isa, rng):
    w = rand(rng, 45, 70)
    p = K.PackedSgemm(w, isa=isa)
    assert (p.N, p.K, p.isa) == (45, 70, isa)
    for m in (1, 6, 50):
        a = rand(rng, m, 70)
        check_gemm(p.run(a, threads=2), a, w)
    with pytest.raises(core.InputError):
        p.run(rand(rng, 3, 71))


@pytest.mark.parametrize("isa", ISAS)
def test_sgemm_nn(isa, rng):
    for (m, n, k) in [(1, 1, 1), (7, 33, 17), (33, 70, 129), (1, 100, 300), (64, 17, 520)]:
        a = rand(rng, m, k)
        bkn = rand(rng, k, n)
        y = K.sgemm_nn(a, bkn, isa=isa, threads=2)
        check_gemm(y, a, np.ascontiguousarray(bkn.T))
        bnk_big = rand(rng, n, k + 5)
        bnk = bnk_big[:, 2:2 + k]
        y = K.sgemm_nn(a, bnk, trans_b=True, isa=isa)
        check_gemm(y, a, np.ascontiguousarray(bnk))
    with pytest.raises(core.InputError):
        K.sgemm_nn(rand(rng, 3, 4), rand(rng, 5, 6), isa=isa)


def test_sgemm_rejects_bad_inputs(rng):
    a, w = rand(rng, 4, 8), rand(rng, 5, 8)
    with pytest.raises(core.InputError):
        K.sgemm(a.astype(np.float64), w)
    with pytest.raises(core.InputError):
        K.sgemm(a, w[:, :7].copy())
    with pytest.raises(core.InputError):
        K.sgemm(a, np.asfortranarray(w))
    with pytest.raises(core.InputError):
        K.sgemm(a[:, ::2], rand(rng, 5, 4))
    with pytest.raises(core.InputError):
        K.sgemm(a, w, bias=rand(rng, 4))
    with pytest.raises(core.InputError):
        K.sgemm(a, w, residual=rand(rng, 5, 4))
    with pytest.raises(core.InputError):
        K.sgemm(a, w, act="swish")
    with pytest.raises(core.InputError):
        K.sgemm(a, w, out=np.empty((4, 6), np.float32))
    with pytest.raises(core.InputError):
        K.sgemm(a, w, out=np.empty((4, 5), np.float64))
    with pytest.raises(core.InputError):
        K.sgemm(a, w, isa="avx9000")
    if "amx" not in ISAS:
        with pytest.raises(core.UnsupportedError):
            K.sgemm(a, w, isa="amx")
    buf = rand(rng, 4, 8)
    with pytest.raises(core.InputError):
        K.sgemm(buf, rand(rng, 5, 8), out=buf[:, :5])  # output overlapping the input
    y = K.sgemm(np.zeros((3, 0), np.float32), np.zeros((4, 0), np.float32), bias=np.arange(4, dtype=np.float32))
    assert np.array_equal(y, np.tile(np.arange(4, dtype=np.float32), (3, 1)))


# ---------------------------------------------------------------------------------------------
# Activations


def act_inputs():
    rng = np.random.default_rng(1)
    x = np.concatenate([
        np.linspace(-20, 20, 4001), np.linspace(-1, 1, 2001), rng.standard_normal(2000) * 3,
        [0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 0.5, -0.5, 0.6, -0.6, 0.59999, 0.70710677, -0.70710677,
         -3.0, 3.0, -87.0, 87.0, -88.5, 88.5, -100.0, 100.0, 1e5, -1e5]])
    return x.astype(np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS)
def test_apply_act_accuracy(isa, act):
    alpha = {"leaky_relu": 0.2, "elu": 1.3}.get(act, 0.0)
    x = act_inputs()
    y = K.apply_act(x, act, alpha=alpha, isa=isa)
    assert y.dtype == np.float32 and y.shape == x.shape and y is not x
    ref = ref_act(x, act, alpha)
    if act == "gelu":
        neg = x < -3
        ref[neg] = gelu_tail_ref(x[neg])
    ok = np.abs(ref) > 1e-30
    rel = np.abs(y[ok] - ref[ok]) / np.abs(ref[ok])
    assert rel.max() <= ACT_RTOL[act], f"max rel err {rel.max():.3g} at x={x[ok][np.argmax(rel)]}"
    assert np.all(np.abs(y[~ok] - ref[~ok]) <= ACT_RTOL[act] * np.abs(ref[~ok]) + 1e-37)
    if act == "gelu_tanh":
        core_range = ok & (np.abs(x) <= 5)
        assert np.max(np.abs(y[core_range] - ref[core_range]) / np.abs(ref[core_range])) <= GELU_TANH_CORE_RTOL
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("isa", ISAS)
def test_apply_act_shapes_and_nan(isa):
    for n in (0, 1, 7, 8, 9, 15, 16, 17, 33):
        x = np.linspace(-3, 3, n, dtype=np.float32)
        assert np.allclose(K.apply_act(x, "tanh", isa=isa), np.tanh(x.astype(np.float64)), rtol=1e-6, atol=0)
    x = np.linspace(-2, 2, 24, dtype=np.float32).reshape(2, 3, 4)
    y = K.apply_act(x[:, ::2], "relu", isa=isa)
    assert y.shape == (2, 2, 4) and np.array_equal(y, np.maximum(x[:, ::2], 0))
    for act in ("sigmoid", "tanh", "gelu", "gelu_tanh", "silu", "elu"):
        assert np.isnan(K.apply_act(np.array([np.nan], np.float32), act, alpha=1.0, isa=isa)[0]), act


# ---------------------------------------------------------------------------------------------
# conv2d


def ref_conv2d(x, w, bias, strides, dilations, pads, groups):
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    xp = np.zeros((n, h + pt + pb, wd + pl + pr, c))
    xp[:, pt:pt + h, pl:pl + wd] = x
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    y = np.zeros((n, oh, ow, o))
    mag = np.zeros((n, oh, ow, o))
    for g in range(groups):
        wg = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw,
                           g * cg:(g + 1) * cg]
                y[..., g * og:(g + 1) * og] += patch @ wg[:, i, j, :].T
                mag[..., g * og:(g + 1) * og] += np.abs(patch) @ np.abs(wg[:, i, j, :]).T
    if bias is not None:
        y += bias
        mag += np.abs(bias)
    return y, mag


CONV_CASES = [
    # (N, H, W, C, O, KH, KW, strides, dilations, pads, groups)
    (2, 5, 7, 16, 33, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),    # 1x1 fast path (plain GEMM)
    (1, 3, 3, 6, 4, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 2),      # 1x1 fast path, groups
    (1, 9, 9, 8, 12, 1, 1, (2, 2), (1, 1), (0, 0, 0, 0), 1),     # 1x1 strided -> im2col
    (1, 6, 6, 4, 8, 1, 1, (1, 1), (1, 1), (1, 0, 0, 1), 1),      # 1x1 padded -> im2col
    (2, 8, 8, 3, 16, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (1, 11, 13, 5, 17, 3, 3, (2, 2), (1, 1), (0, 1, 1, 0), 1),   # asymmetric pads, odd sizes
    (1, 10, 9, 7, 13, 3, 3, (1, 1), (2, 2), (2, 2, 2, 2), 1),    # dilation
    (1, 7, 7, 4, 6, 5, 5, (1, 2), (1, 1), (2, 2, 2, 2), 1),
    (1, 12, 12, 3, 8, 7, 7, (2, 2), (1, 1), (3, 3, 3, 3), 1),    # stem-like
    (1, 6, 5, 8, 10, 3, 2, (1, 1), (1, 2), (1, 0, 1, 1), 2),     # groups 2, KH != KW
    (1, 8, 8, 12, 12, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 12),   # depthwise (groups == C)
    (1, 7, 6, 6, 12, 3, 3, (2, 1), (1, 1), (1, 1, 1, 1), 6),     # depthwise, multiplier 2
    (1, 1, 9, 5, 7, 1, 3, (1, 1), (1, 1), (0, 1, 0, 1), 1),      # H = 1
    (1, 6, 6, 30, 20, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),    # K = 270: K blocks split a channel run
    (1, 4, 4, 64, 40, 3, 3, (1, 1), (1, 1), (0, 0, 0, 0), 1),    # K = 576, 4 output pixels
    (3, 17, 15, 8, 24, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),   # M = 765 rows, several row blocks
    (1, 2, 2, 3, 5, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),      # kernel larger than the image
    # direct kernel (<= 32 output channels per group, or KxK with K <= 1152 and <= 128 outputs):
    # channel tails around the 8/16-lane blocks, pixel blocks 8/6/4/2/1, padded bands, strides
    (2, 28, 28, 1, 6, 5, 5, (1, 1), (1, 1), (2, 2, 2, 2), 1),    # LeNet conv1
    (3, 14, 14, 6, 16, 5, 5, (1, 1), (1, 1), (0, 0, 0, 0), 1),   # LeNet conv2
    (1, 13, 17, 3, 32, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1), 1),   # stem-like, stride 2
    (1, 9, 23, 5, 17, 3, 3, (1, 2), (1, 1), (0, 2, 1, 1), 1),    # O = 17, asymmetric pads
    (1, 7, 11, 9, 31, 2, 4, (2, 1), (2, 1), (1, 3, 0, 2), 1),    # dilation, KH != KW
    (2, 6, 19, 7, 9, 3, 3, (1, 1), (1, 2), (1, 2, 1, 2), 1),     # O = 9, dilated columns
    (1, 5, 37, 24, 24, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),   # 1x1, 37 pixels a row
    (1, 4, 13, 16, 33, 1, 1, (1, 2), (1, 1), (0, 0, 0, 0), 1),   # 1x1 strided, O = 33 -> GEMM
    (1, 8, 8, 12, 100, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),   # 100 outputs, K = 108
    (1, 7, 9, 8, 20, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 4),     # groups 4, 5 outputs each
    (1, 6, 6, 16, 140, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),   # 140 outputs -> GEMM
    (1, 5, 7, 200, 48, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),   # K = 1800 -> GEMM
    (1, 3, 40, 2, 3, 3, 7, (1, 1), (1, 1), (0, 3, 0, 3), 1),     # wide kernel, 3 outputs
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:7])) + f"g{c[-1]}")
def test_conv2d(isa, case, rng):
    n, h, wd, c, o, kh, kw, strides, dil, pads, groups = case
    x = rand(rng, n, h, wd, c)
    w = rand(rng, o, kh, kw, c // groups)
    b = rand(rng, o)
    ref, mag = ref_conv2d(x, w, b, strides, dil, pads, groups)
    total = ref.size
    big = np.full(total + 37, SENTINEL, np.float32)
    out = big[11:11 + total].reshape(ref.shape)
    y = K.conv2d(x, w, bias=b, strides=strides, dilations=dil, pads=pads, groups=groups, isa=isa,
                 threads=2, out=out)
    assert np.shares_memory(y, big)
    tol = lin_tol(kh * kw * c // groups, mag)
    err = np.abs(out - ref)
    assert np.all(err <= tol), f"max err {err.max()} (tol {tol.flat[np.argmax(err)]})"
    assert np.all(big[:11] == SENTINEL) and np.all(big[11 + total:] == SENTINEL)
    # threads 1 and 2 agree bitwise
    y1 = K.conv2d(x, w, bias=b, strides=strides, dilations=dil, pads=pads, groups=groups, isa=isa, threads=1)
    assert np.array_equal(y1.view(np.uint32), out.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("o,groups", [(6, 1), (24, 1), (20, 2), (48, 1)])
def test_conv2d_direct_epilogue(isa, act, o, groups, rng):
    """Direct kernel (few outputs / short K): every activation (piecewise-linear ones in registers,
    transcendental ones over the finished row), residual, bias, groups; guards around the output."""
    x = rand(rng, 2, 9, 13, 4 * groups)
    w = rand(rng, o, 3, 3, 4) * 0.4
    b = rand(rng, o)
    ref, mag = ref_conv2d(x, w, b, (1, 1), (1, 1), (1, 1, 1, 1), groups)
    r = rand(rng, *ref.shape)
    big = np.full(ref.size + 40, SENTINEL, np.float32)
    out = big[17:17 + ref.size].reshape(ref.shape)
    y = K.conv2d(x, w, bias=b, pads=(1, 1, 1, 1), groups=groups, act=act, alpha=0.7, residual=r, isa=isa,
                 threads=2, out=out)
    assert np.shares_memory(y, big)
    want = ref_act(ref + r, act, 0.7)
    tol = ACT_LIP[act] * lin_tol(36, mag + np.abs(r)) + ACT_RTOL[act] * np.abs(want) + 1e-30
    assert np.all(np.abs(out - want) <= tol), f"max err {np.max(np.abs(out - want) - tol)}"
    assert np.all(big[:17] == SENTINEL) and np.all(big[17 + ref.size:] == SENTINEL)
    y1 = K.conv2d(x, w, bias=b, pads=(1, 1, 1, 1), groups=groups, act=act, alpha=0.7, residual=r, isa=isa,
                  threads=1)
    assert np.array_equal(y1.view(np.uint32), out.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", [
    # (N, H, W, O, KH, KW, strides, dilations, pads, act): one input channel, <= 8 outputs: the
    # pixel-vector direct kernel (stride and dilation 1 along rows; rows any), pixel-block tails
    (2, 28, 28, 6, 5, 5, (1, 1), (1, 1), (2, 2, 2, 2), "tanh"),   # LeNet conv1
    (1, 7, 5, 1, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), "none"),
    (1, 9, 17, 3, 3, 4, (2, 1), (2, 1), (0, 2, 1, 1), "relu"),
    (1, 6, 33, 8, 1, 7, (1, 1), (1, 1), (0, 3, 0, 3), "relu6"),
    (3, 5, 16, 5, 2, 2, (1, 1), (1, 1), (0, 0, 0, 0), "leaky_relu"),
    (1, 4, 40, 7, 3, 3, (3, 1), (1, 1), (1, 0, 1, 5), "silu"),
    (1, 8, 8, 9, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), "relu"),      # 9 outputs: channel vectors
])
def test_conv2d_one_channel(isa, case, rng):
    n, h, wd, o, kh, kw, strides, dil, pads, act = case
    x = rand(rng, n, h, wd, 1)
    w = rand(rng, o, kh, kw, 1)
    b = rand(rng, o)
    ref, mag = ref_conv2d(x, w, b, strides, dil, pads, 1)
    r = rand(rng, *ref.shape)
    big = np.full(ref.size + 40, SENTINEL, np.float32)
    out = big[17:17 + ref.size].reshape(ref.shape)
    K.conv2d(x, w, bias=b, strides=strides, dilations=dil, pads=pads, act=act, alpha=0.3, residual=r, isa=isa,
             threads=2, out=out)
    want = ref_act(ref + r, act, 0.3)
    tol = ACT_LIP[act] * lin_tol(kh * kw, mag + np.abs(r)) + ACT_RTOL[act] * np.abs(want) + 1e-30
    assert np.all(np.abs(out - want) <= tol), f"max err {np.max(np.abs(out - want) - tol)}"
    assert np.all(big[:17] == SENTINEL) and np.all(big[17 + ref.size:] == SENTINEL)
    y1 = K.conv2d(x, w, bias=b, strides=strides, dilations=dil, pads=pads, act=act, alpha=0.3, residual=r, isa=isa,
                  threads=1)
    assert np.array_equal(y1.view(np.uint32), out.view(np.uint32))
    # in place: the residual is the output
    y2 = r.copy()
    K.conv2d(x, w, bias=b, strides=strides, dilations=dil, pads=pads, act=act, alpha=0.3, residual=y2, isa=isa,
             threads=2, out=y2)
    assert np.array_equal(y2.view(np.uint32), out.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ["relu6", "silu", "gelu", "elu"])
def test_conv2d_epilogue(isa, act, rng):
    x = rand(rng, 1, 9, 8, 6)
    w = rand(rng, 10, 3, 3, 3) * 0.3
    b = rand(rng, 10)
    ref, mag = ref_conv2d(x, w, b, (1, 1), (1, 1), (1, 1, 1, 1), 2)
    r = rand(rng, *ref.shape)
    y = K.conv2d(x, w, bias=b, pads=(1, 1, 1, 1), groups=2, act=act, alpha=1.0, residual=r, isa=isa)
    want = ref_act(ref + r, act, 1.0)
    tol = ACT_LIP[act] * lin_tol(27, mag + np.abs(r)) + ACT_RTOL[act] * np.abs(want)
    assert np.all(np.abs(y - want) <= tol)


def test_conv2d_rejects_bad_inputs(rng):
    x = rand(rng, 1, 5, 5, 4)
    with pytest.raises(core.InputError):
        K.conv2d(x, rand(rng, 8, 3, 3, 3))  # C/groups mismatch
    with pytest.raises(core.InputError):
        K.conv2d(x, rand(rng, 6, 3, 3, 2), groups=4)  # O not a multiple of groups... 6 % 4
    with pytest.raises(core.InputError):
        K.conv2d(x, rand(rng, 8, 7, 7, 4))  # kernel larger than the input
    with pytest.raises(core.InputError):
        K.conv2d(x, rand(rng, 8, 3, 3, 4), strides=(0, 1))
    with pytest.raises(core.InputError):
        K.conv2d(x.astype(np.float64), rand(rng, 8, 3, 3, 4))
    with pytest.raises(core.InputError):
        K.conv2d(x, rand(rng, 8, 3, 3, 4), out=np.empty((1, 3, 3, 7), np.float32))


@pytest.mark.parametrize("isa", ISAS)
def test_packed_conv2d_handle(isa, rng):
    w = rand(rng, 20, 3, 3, 4)
    b = rand(rng, 20)
    pc = K.PackedConv2d(w, groups=2, isa=isa)
    assert pc.isa == isa
    for (h, wd, strides, pads) in [(5, 6, (1, 1), (1, 1, 1, 1)), (9, 4, (2, 1), (0, 1, 2, 0))]:
        x = rand(rng, 2, h, wd, 8)
        ref, mag = ref_conv2d(x, w, b, strides, (1, 1), pads, 2)
        y = pc.run(x, bias=b, strides=strides, pads=pads, threads=2)
        assert np.all(np.abs(y - ref) <= lin_tol(36, mag))
    with pytest.raises(core.InputError):
        pc.run(rand(rng, 1, 5, 5, 6))  # 6 channels, the weights expect 8


# Winograd F(4x4, 3x3) (conv2d.cpp, winograd_impl.h): 3x3, stride 1, dilation 1, one group.
# (N, H, W, C, O, pads): partial output tiles at the bottom / right, images smaller than a tile,
# channel tails around the 8/16-lane vectors and the 16/32-column GEMM panels, several tile blocks
# per thread (> 1 MB of transformed tiles), asymmetric and zero padding.
WINO_CASES = [
    (1, 8, 8, 16, 32, (1, 1, 1, 1)),
    (2, 7, 9, 5, 17, (1, 1, 1, 1)),
    (1, 13, 11, 70, 40, (0, 1, 2, 0)),
    (3, 4, 4, 33, 65, (1, 1, 1, 1)),
    (1, 3, 3, 8, 8, (1, 1, 1, 1)),
    (1, 1, 2, 3, 1, (1, 1, 1, 0)),
    (2, 30, 30, 64, 64, (1, 1, 1, 1)),
    (1, 6, 6, 200, 48, (0, 0, 0, 0)),
    (2, 9, 4, 8, 16, (2, 3, 0, 1)),     # pads of 2-3: output pixels whose taps are mostly padding
    (1, 6, 9, 38, 3, (0, 3, 3, 0)),
]


def tile_max(mag):
    """Per image and channel, the largest value of each 4x4 output tile, spread over the tile: Winograd's
    rounding comes from the whole tile's transformed patch, so an output pixel whose own taps are small
    (mostly padding) carries the error of its tile's larger neighbours."""
    out = np.empty_like(mag)
    for i in range(0, mag.shape[1], 4):
        for j in range(0, mag.shape[2], 4):
            out[:, i:i + 4, j:j + 4] = mag[:, i:i + 4, j:j + 4].max(axis=(1, 2), keepdims=True)
    return out


def check_winograd(y, ref, mag, c, lip=1.0, extra=0.0):
    # The transforms' coefficients (up to 5 in B, 8 in A) scale the GEMM's rounding: 4x the direct bound,
    # taken on the tile's largest sum |x||w| (measured: <= 1.2e-6 sqrt(9C) of it over random shapes and pads).
    tol = lip * 4 * lin_tol(9 * c, tile_max(mag)) + extra
    err = np.abs(y - ref)
    assert np.all(err <= tol), f"max err {err.max()} (tol {tol.flat[np.argmax(err - tol)]})"


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "scalar"])
@pytest.mark.parametrize("case", WINO_CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_conv2d_winograd(isa, case, rng):
    n, h, wd, c, o, pads = case
    x = rand(rng, n, h, wd, c)
    w = rand(rng, o, 3, 3, c)
    b = rand(rng, o)
    pc = K.PackedConv2d(w, isa=isa, path="winograd")
    assert pc.path == "winograd" and pc.isa == isa
    ref, mag = ref_conv2d(x, w, b, (1, 1), (1, 1), pads, 1)
    big = np.full(ref.size + 37, SENTINEL, np.float32)
    out = big[11:11 + ref.size].reshape(ref.shape)
    y = pc.run(x, bias=b, pads=pads, threads=2, out=out)
    assert np.shares_memory(y, big)
    check_winograd(out, ref, mag, c)
    assert np.all(big[:11] == SENTINEL) and np.all(big[11 + ref.size:] == SENTINEL)
    # Each element's sum order is fixed by C: threads 1 and 2 agree bitwise.
    y1 = pc.run(x, bias=b, pads=pads, threads=1)
    assert np.array_equal(y1.view(np.uint32), out.view(np.uint32))


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "scalar"])
@pytest.mark.parametrize("act", ACTS)
def test_conv2d_winograd_epilogue(isa, act, rng):
    """Bias, residual and every activation in the output transform; 20 output channels (a masked
    vector tail), a 9x13 output (partial tiles)."""
    x = rand(rng, 2, 9, 13, 12)
    w = rand(rng, 20, 3, 3, 12) * 0.4
    b = rand(rng, 20)
    ref, mag = ref_conv2d(x, w, b, (1, 1), (1, 1), (1, 1, 1, 1), 1)
    r = rand(rng, *ref.shape)
    y = K.conv2d(x, w, bias=b, pads=(1, 1, 1, 1), act=act, alpha=0.7, residual=r, isa=isa, threads=2,
                 path="winograd")
    want = ref_act(ref + r, act, 0.7)
    check_winograd(y, want, mag, 12, lip=ACT_LIP[act],
                   extra=ACT_LIP[act] * lin_tol(1, np.abs(r)) + ACT_RTOL[act] * np.abs(want) + 1e-30)


def test_conv2d_winograd_rejects(rng):
    w = rand(rng, 8, 3, 3, 4)
    x = rand(rng, 1, 6, 6, 4)
    if "avx2" in ISAS:
        pc = K.PackedConv2d(w, isa="avx2", path="winograd")
        for kw in (dict(strides=(2, 1)), dict(dilations=(1, 2))):
            with pytest.raises(core.InputError, match="stride 1 and dilation 1"):
                pc.run(x, **kw)
        with pytest.raises(core.InputError, match="no 'winograd' path"):
            K.PackedConv2d(rand(rng, 8, 5, 5, 4), isa="avx2", path="winograd")
        with pytest.raises(core.InputError, match="no 'winograd' path"):
            K.PackedConv2d(rand(rng, 8, 3, 3, 2), groups=2, isa="avx2", path="winograd")
    with pytest.raises(core.InputError, match="no 'winograd' path"):
        K.PackedConv2d(w, isa="scalar", path="winograd")
    with pytest.raises(core.InputError, match="path must be"):
        K.PackedConv2d(w, path="fft")


@pytest.mark.parametrize("isa", ISAS)
def test_sgemm_all_small_sizes(isa, rng):
    """Every (M, N, K) in SIZES^3 against float64 (no epilogue), through one packed handle per (N, K)."""
    for n in SIZES:
        for k in SIZES:
            w = rand(rng, n, k)
            p = K.PackedSgemm(w, isa=isa)
            a_all = rand(rng, max(SIZES), k)
            for m in SIZES:
                a = a_all[:m]
                check_gemm(p.run(a), a, w)


# ---------------------------------------------------------------------------------------------
# Big-batch paths of the driver (sgemm.cpp): an output of >= 8 MB written once goes through a tile
# buffer and streaming stores (unaligned row ends with plain stores); an A of >= 2 MB with K >= 64
# read once is prefetched a row block ahead (the next task claimed before the current one runs);
# row tiles sweep a sub-chunk of panels; A shared by the panel chunks of a job is packed once.
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k", [(5003, 421, 40), (6001, 50, 100), (96, 700, 1100), (250, 1030, 300)])
def test_sgemm_big_paths_threads_and_guards(isa, m, n, k, rng):
    a, w, b = rand(rng, m, k), rand(rng, n, k) * 0.5, rand(rng, n)
    r = rand(rng, m, n)
    p = K.PackedSgemm(w, isa=isa)
    outs = []
    for threads in (1, 2):
        out, big, org = guarded_out(m, n)  # row-strided output (ldc = n + 6): rows not 16-byte aligned
        p.run(a, bias=b, residual=r, act="relu6", threads=threads, out=out)
        assert_guards(big, org, (m, n))
        outs.append(out.copy())
    check_gemm(outs[0], a, w, bias=b, residual=r, act="relu6")
    assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c,o", [(16, 336), (96, 48), (96, 24), (80, 40)])
def test_conv2d_big_batch(isa, c, o, rng):
    """Batch 8 NHWC convolutions whose tensors exceed the caches: 1x1 on the GEMM (streamed output at
    16 -> 336, prefetched A at 96 -> 48), 1x1 and 3x3 on the direct kernel (prefetched input rows);
    residual, relu; guards; threads 1 and 2 bitwise identical."""
    k = 3 if c == 80 else 1
    pads = (1, 1, 1, 1) if k == 3 else (0, 0, 0, 0)
    x = rand(rng, 8, 28, 29, c)
    w = rand(rng, o, k, k, c) * 0.3
    b = rand(rng, o)
    ref, mag = ref_conv2d(x, w, b, (1, 1), (1, 1), pads, 1)
    res = rand(rng, *ref.shape)
    want = np.maximum(ref + res, 0)
    tol = lin_tol(k * k * c, mag + np.abs(res))
    pc = K.PackedConv2d(w, isa=isa)
    outs = []
    for threads in (1, 2):
        big = np.full(ref.size + 40, SENTINEL, np.float32)
        out = big[13:13 + ref.size].reshape(ref.shape)
        pc.run(x, bias=b, pads=pads, act="relu", residual=res, threads=threads, out=out)
        assert np.all(big[:13] == SENTINEL) and np.all(big[13 + ref.size:] == SENTINEL)
        assert np.all(np.abs(out - want) <= tol), f"max err {np.max(np.abs(out - want) - tol)}"
        outs.append(out.copy())
    assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))

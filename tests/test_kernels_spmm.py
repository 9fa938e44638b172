"""CSR SpMM (kernels.CsrMatrix) and sparse conv2d against float64 numpy, on every supported ISA.

Tolerance (fp32 accumulation, any summation order):
  |y - ref| <= 4e-7 * (sqrt(nnz_max) + 4) * mag + 1e-30,   mag = |x| @ |W|.T * |scale| + |bias| + |residual|
Activations are checked with relu/gelu (Lipschitz 1.13) as L * linear tolerance + 1e-6 * |ref|.
Every output goes into a view of a larger sentinel-filled array; the sentinels must survive.
Results with threads=1 and threads=2 are bitwise identical (per-row summation order is fixed).
"""
import math

import numpy as np
import pytest

from slimrt import formats
from slimrt._native import core

K = core.kernels
ISAS = core.cpu_info()["supported_isas"]
SENT = np.float32(-7777.0)
_erf = np.vectorize(math.erf, otypes=[np.float64])


def ref_act(x, act):
    if act == "relu":
        return np.maximum(x, 0)
    if act == "gelu":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    return x


def sparse_dense(rng, n, k, sparsity, empty_rows=True):
    w = rng.standard_normal((n, k)).astype(np.float32)
    w *= rng.random((n, k)) >= sparsity
    if empty_rows and n > 2:
        w[1] = 0  # an empty row
    return w


def to_csr(w, idx_dtype=np.uint16, ptr_dtype=np.int32):
    mask = w != 0
    indptr = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(ptr_dtype)
    r, c = np.nonzero(mask)
    return indptr, c.astype(idx_dtype), w[r, c].astype(np.float32)


def guarded(m, n, rng):
    """An (m, n) view with row stride n+5 into a sentinel-filled buffer."""
    buf = np.full((m + 2, n + 5), SENT, np.float32)
    return buf, buf[1:m + 1, 2:n + 2]


def check_guard(buf, m, n):
    inner = np.zeros(buf.shape, bool)
    inner[1:m + 1, 2:n + 2] = True
    assert np.all(buf[~inner] == SENT), "a sentinel around out was overwritten"


def tol(x, wd, nnz_max, extra=0.0):
    mag = np.abs(x.astype(np.float64)) @ np.abs(wd.astype(np.float64)).T + extra
    return 4e-7 * (math.sqrt(max(nnz_max, 1)) + 4) * mag + 1e-30


SHAPES = [(1, 1, 1), (1, 17, 33), (2, 16, 15), (3, 7, 64), (4, 31, 65), (7, 8, 100), (8, 33, 17),
          (15, 64, 31), (16, 65, 7), (17, 3, 129), (33, 100, 16), (64, 17, 257), (65, 40, 50), (100, 33, 3)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M%dN%dK%d" % s)
@pytest.mark.parametrize("sparsity", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_csr_f32(isa, shape, sparsity):
    m, n, k = shape
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    w = sparse_dense(rng, n, k, sparsity)
    x = rng.standard_normal((m, k)).astype(np.float32)
    ip, ix, v = to_csr(w)
    a = K.CsrMatrix(ip, ix, v, k, isa=isa)
    assert (a.N, a.K, a.nnz, a.isa) == (n, k, v.size, isa)
    buf, out = guarded(m, n, rng)
    y = a.run(x, out=out)
    assert y.shape == (m, n)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    nnz_max = int(np.diff(ip).max(initial=0))
    assert np.all(np.abs(out - ref) <= tol(x, w, nnz_max))
    check_guard(buf, m, n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(1, 33, 64), (5, 16, 31), (64, 65, 100)], ids=lambda s: "M%dN%dK%d" % s)
@pytest.mark.parametrize("per_row", [True, False])
def test_csr_int8(isa, shape, per_row):
    m, n, k = shape
    rng = np.random.default_rng(n + k)
    q = rng.integers(-127, 128, (n, k)).astype(np.int8) * (rng.random((n, k)) < 0.3)
    scale = (rng.random(n if per_row else 1) * 0.1 + 0.01).astype(np.float32)
    mask = q != 0
    ip = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int64)
    r, c = np.nonzero(mask)
    a = K.CsrMatrix(ip, c.astype(np.int32), q[r, c].astype(np.int8), k, w_scale=scale, isa=isa)
    x = rng.standard_normal((m, k)).astype(np.float32)
    wd = q.astype(np.float64) * (scale[:, None] if per_row else scale[0])
    buf, out = guarded(m, n, rng)
    a.run(x, out=out)
    ref = x.astype(np.float64) @ wd.T
    assert np.all(np.abs(out - ref) <= tol(x, wd, k))
    check_guard(buf, m, n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 2, 9, 40])
@pytest.mark.parametrize("act", ["none", "relu", "gelu"])
def test_csr_epilogue(isa, m, act):
    n, k = 37, 45
    rng = np.random.default_rng(m)
    w = sparse_dense(rng, n, k, 0.7)
    ip, ix, v = to_csr(w)
    a = K.CsrMatrix(ip, ix, v, k, isa=isa)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    scale = rng.random(n).astype(np.float32) + 0.5
    res = rng.standard_normal((m, n)).astype(np.float32)
    buf, out = guarded(m, n, rng)
    a.run(x, bias=bias, scale=scale, residual=res, act=act, out=out)
    lin = (x.astype(np.float64) @ w.T.astype(np.float64)) * scale + bias + res
    t = tol(x, w, k) * scale + 1e-6 * (np.abs(bias) + np.abs(res))
    assert np.all(np.abs(out - ref_act(lin, act)) <= 1.13 * t + 1e-6 * np.abs(ref_act(lin, act)))
    check_guard(buf, m, n)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m", [1, 64])
def test_csr_threads_bitwise(isa, m):
    rng = np.random.default_rng(3)
    w = sparse_dense(rng, 300, 200, 0.8)
    a = K.CsrMatrix(*to_csr(w), 200, isa=isa)
    x = rng.standard_normal((m, 200)).astype(np.float32)
    assert np.array_equal(a.run(x, threads=1), a.run(x, threads=2))


@pytest.mark.parametrize("isa", ISAS)
def test_csr_wide_k_int32_indices(isa):
    k, n, m = 70000, 9, 5  # K > 65536: int32 column indices all the way
    rng = np.random.default_rng(4)
    w = sparse_dense(rng, n, k, 0.99)
    ip, ix, v = to_csr(w, np.int32)
    a = K.CsrMatrix(ip, ix, v, k, isa=isa)
    x = rng.standard_normal((m, k)).astype(np.float32)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.all(np.abs(a.run(x) - ref) <= tol(x, w, int(np.diff(ip).max())))


def test_csr_matches_formats():
    """formats.CSR with QInt8 per-row values runs directly from its own arrays."""
    rng = np.random.default_rng(5)
    w = sparse_dense(rng, 20, 30, 0.7)
    amax = np.abs(w).max(1)
    scale = np.where(amax > 0, amax / 127, 1).astype(np.float32)

    def qvals(vals, rows):
        return formats.QInt8(np.round(vals / scale[rows]).astype(np.int8), scale, axis=0, shape=vals.shape,
                             channels=20)

    t = formats.CSR.from_dense(w, values_fn=qvals)
    a = K.CsrMatrix(t.indptr, t.indices, t.values.q, 30, w_scale=t.values.scale)
    x = rng.standard_normal((3, 30)).astype(np.float32)
    wd = t.to_dense()
    ref = x.astype(np.float64) @ wd.T.astype(np.float64)
    assert np.all(np.abs(a.run(x) - ref) <= tol(x, wd, 30))


def test_csr_errors():
    ip, ix, v = to_csr(np.eye(4, dtype=np.float32))
    with pytest.raises(core.InputError):
        K.CsrMatrix(ip, ix, v, 3)  # column 3 out of range
    with pytest.raises(core.InputError):
        K.CsrMatrix(np.array([0, 2, 1, 3, 4], np.int32), ix, v, 4)  # decreasing indptr
    with pytest.raises(core.InputError):
        K.CsrMatrix(ip, ix.astype(np.int64), v, 4)  # index dtype
    with pytest.raises(core.InputError):
        K.CsrMatrix(ip, ix, v.astype(np.int8), 4)  # int8 values without a scale
    a = K.CsrMatrix(ip, ix, v, 4)
    with pytest.raises(core.InputError):
        a.run(np.zeros((2, 5), np.float32))
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(core.InputError):
        a.run(x, residual=x, out=x)  # residual overlapping out


# ---- convolution ----------------------------------------------------------------

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
    (1, 4, 4, 8, 8, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 4),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: "x".join(map(str, c[:7])))
def test_csr_conv2d(isa, cfg):
    n, h, wd, c, o, kh, kw, st, dl, pd, g = cfg
    rng = np.random.default_rng(h * wd + o)
    x = rng.standard_normal((n, h, wd, c)).astype(np.float32)
    w4 = rng.standard_normal((o, kh, kw, c // g)).astype(np.float32) * (rng.random((o, kh, kw, c // g)) > 0.5)
    wm = w4.reshape(o, -1)
    a = K.CsrMatrix(*to_csr(wm), wm.shape[1], isa=isa)
    bias = rng.standard_normal(o).astype(np.float32)
    ref = ref_conv(x.astype(np.float64), w4.astype(np.float64), st, dl, pd, g) + bias
    res = rng.standard_normal(ref.shape).astype(np.float32)
    y = a.conv2d(x, kh, kw, strides=list(st), dilations=list(dl), pads=list(pd), groups=g, bias=bias,
                 residual=res, act="relu")
    mag = ref_conv(np.abs(x).astype(np.float64), np.abs(w4).astype(np.float64), st, dl, pd, g)
    t = 4e-7 * (math.sqrt(wm.shape[1]) + 4) * (mag + np.abs(bias) + np.abs(res)) + 1e-30
    assert np.all(np.abs(y - np.maximum(ref + res, 0)) <= t)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("idx_dtype", [np.uint16, np.int32])
@pytest.mark.parametrize("nnz_row", [1, 7, 8, 9, 15, 16, 17, 31, 33])
def test_csr_gemv_tail_ignores_other_rows(isa, idx_dtype, nnz_row):
    """Batch-1 rows end in a masked vector step that reads columns of the next row: an inf in x
    at a column only the next row uses must not reach this row (0 * inf would be nan)."""
    k, n = 97, 4
    w = np.zeros((n, k), np.float32)
    w[0, :nnz_row] = 1.0 + np.arange(nnz_row, dtype=np.float32)   # row 0: columns 0..nnz_row-1
    w[1, 90:] = 2.0                                              # row 1 reads columns 90..96
    w[3, 50:60] = -1.0
    x = np.arange(k, dtype=np.float32)[None] / k
    x[0, 90:] = np.inf
    indptr, cols, vals = to_csr(w, idx_dtype)
    y = K.CsrMatrix(indptr, cols, vals, k, isa=isa).run(x, threads=1)
    want = x[:, :nnz_row].astype(np.float64) @ w[0, :nnz_row].astype(np.float64)
    assert np.isfinite(y[0, 0]) and abs(y[0, 0] - want[0]) <= 1e-5 * max(1.0, abs(want[0]))
    assert np.isinf(y[0, 1]) and y[0, 2] == 0 and np.isfinite(y[0, 3])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(1, 33, 64), (2, 5, 7), (3, 17, 100), (64, 65, 129)], ids=lambda s: "M%dN%dK%d" % s)
@pytest.mark.parametrize("table", ["shared", "per_row", "per_row_scaled", "small"])
def test_csr_codes(isa, shape, table):
    """uint8 codes into a <= 16-entry table (4-bit codebook / log2 values of a CSR), decoded in
    the kernels: against the float64 reference of table[row][code] (* scale[row])."""
    m, n, k = shape
    rng = np.random.default_rng(m * 1000 + n + k)
    size = 5 if table == "small" else 16
    rows = 1 if table in ("shared", "small") else n
    tab = rng.standard_normal((rows, size)).astype(np.float32)
    mask = rng.random((n, k)) < 0.4
    if n > 2:
        mask[1] = False
    codes_dense = rng.integers(0, size, (n, k)).astype(np.uint8)
    indptr = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
    r, c = np.nonzero(mask)
    codes = codes_dense[r, c]
    scale = rng.random(n).astype(np.float32) + 0.5 if table == "per_row_scaled" else None
    wd = np.zeros((n, k), np.float64)
    wd[r, c] = tab[r if rows > 1 else 0, codes]
    if scale is not None:
        wd *= scale[:, None]
    a = K.CsrMatrix(indptr, c.astype(np.uint16), codes, k, w_scale=scale, isa=isa, table=tab)
    x = rng.standard_normal((m, k)).astype(np.float32)
    buf, out = guarded(m, n, rng)
    y = a.run(x, threads=2, out=out)
    check_guard(buf, m, n)
    ref = x.astype(np.float64) @ wd.T
    assert np.all(np.abs(y - ref) <= tol(x, wd, int(mask.sum(1).max()))), np.abs(y - ref).max()
    if mask.sum() >= 1000:  # 1 byte per non-zero instead of 4 (the tables cost 64 bytes per row)
        assert a.nbytes < K.CsrMatrix(indptr, c.astype(np.uint16), wd[r, c].astype(np.float32), k, isa=isa).nbytes


def test_csr_codes_errors():
    indptr = np.array([0, 2], np.int32)
    cols = np.array([0, 3], np.uint16)
    tab = np.zeros((1, 4), np.float32)
    with pytest.raises(core.InputError, match="code 4 >= table size 4"):
        K.CsrMatrix(indptr, cols, np.array([1, 4], np.uint8), 5, table=tab)
    with pytest.raises(core.InputError, match="table goes with uint8 codes"):
        K.CsrMatrix(indptr, cols, np.array([1, 2], np.uint8), 5)
    with pytest.raises(core.InputError, match="1 or N rows of 1..16 entries"):
        K.CsrMatrix(indptr, cols, np.array([1, 2], np.uint8), 5, table=np.zeros((1, 17), np.float32))


# ---- sliced-ELL batch-1 layout (CsrSell, built by pack_csr next to the CSR arrays) -----------
# SLIMRT_CSR_LAYOUT=sell forces it wherever the ISA has one (AVX2: 8-row slices, 16-column blocks;
# AVX-512: 16-row slices, 32-column blocks), =csr keeps the gather GEMV; unset, the pack-time rule
# picks. Batch 1 and 2 run through it; M >= 3 uses the transposed tiles either way.

LAYOUTS = ["sell", "csr", "auto"]
SELL_SHAPES = [(1, 1), (1, 33), (15, 31), (16, 32), (17, 33), (33, 63), (8, 64), (9, 65), (31, 100),
               (100, 17), (64, 257)]


def set_layout(monkeypatch, layout):
    if layout == "auto":
        monkeypatch.delenv("SLIMRT_CSR_LAYOUT", raising=False)
    else:
        monkeypatch.setenv("SLIMRT_CSR_LAYOUT", layout)


def make_values(kind, rng, mask):
    """(values, csr kwargs, dense float64 weights) for a mask, in one of the CSR value kinds."""
    n, k = mask.shape
    r, c = np.nonzero(mask)
    wd = np.zeros((n, k), np.float64)
    if kind == "f32":
        v = rng.standard_normal(r.size).astype(np.float32)
        wd[r, c] = v
        return v, {}, wd
    if kind == "i8":
        q = rng.integers(-127, 128, r.size).astype(np.int8)
        scale = (rng.random(n) * 0.1 + 0.01).astype(np.float32)
        wd[r, c] = q * scale[r].astype(np.float64)
        return q, {"w_scale": scale}, wd
    # codes: "shared0" one table with a 0 entry (the padding code), "shared" without one (-> f32),
    # "rows_equal" n copies of one table, "rows" n distinct tables (-> f32), "small" 5 entries
    size = 5 if kind == "small" else 16
    tab = rng.standard_normal((1, size)).astype(np.float32)
    if kind == "shared0":
        tab[0, 9] = 0.0
    if kind == "rows_equal":
        tab = tab.repeat(n, 0)
    if kind == "rows":
        tab = rng.standard_normal((n, size)).astype(np.float32)
    codes = rng.integers(0, size, r.size).astype(np.uint8)
    wd[r, c] = tab[r if tab.shape[0] > 1 else 0, codes]
    return codes, {"table": tab}, wd


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SELL_SHAPES, ids=lambda s: "N%dK%d" % s)
@pytest.mark.parametrize("sparsity", [0.0, 0.05, 0.5, 0.9, 1.0])
def test_sell_f32(monkeypatch, isa, layout, shape, sparsity):
    set_layout(monkeypatch, layout)
    n, k = shape
    rng = np.random.default_rng(n * 100 + k + int(sparsity * 10))
    w = sparse_dense(rng, n, k, sparsity)
    ip, ix, v = to_csr(w)
    a = K.CsrMatrix(ip, ix, v, k, isa=isa)
    if layout == "csr" or isa == "scalar":
        assert a.layout == "csr" and a.sell_nbytes == 0
    elif layout == "sell" and sparsity < 1.0:
        assert a.layout == "sell" and a.sell_nbytes > 0
    for m in (1, 2, 3, 5, 8, 9):  # AVX-512: rows in groups of 4 below M = 8, AVX2: 2 below 3
        x = rng.standard_normal((m, k)).astype(np.float32)
        buf, out = guarded(m, n, rng)
        a.run(x, out=out, threads=2)
        check_guard(buf, m, n)
        ref = x.astype(np.float64) @ w.T.astype(np.float64)
        assert np.all(np.abs(out - ref) <= tol(x, w, int(np.diff(ip).max(initial=0)))), (m, np.abs(out - ref).max())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["sell", "csr"])
@pytest.mark.parametrize("kind", ["f32", "i8", "shared0", "shared", "rows_equal", "rows", "small"])
@pytest.mark.parametrize("shape", [(17, 33), (33, 100), (70, 300)], ids=lambda s: "N%dK%d" % s)
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_sell_value_kinds(monkeypatch, isa, layout, kind, shape, sparsity):
    set_layout(monkeypatch, layout)
    n, k = shape
    rng = np.random.default_rng(n + k * 7 + int(sparsity * 10))
    mask = rng.random((n, k)) >= sparsity
    mask[min(2, n - 1)] = False  # an empty row
    vals, kw, wd = make_values(kind, rng, mask)
    ip = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
    a = K.CsrMatrix(ip, np.nonzero(mask)[1].astype(np.uint16), vals, k, isa=isa, **kw)
    x = rng.standard_normal((2, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    res = rng.standard_normal((2, n)).astype(np.float32)
    buf, out = guarded(2, n, rng)
    a.run(x, bias=bias, residual=res, out=out, threads=2)
    check_guard(buf, 2, n)
    ref = x.astype(np.float64) @ wd.T + bias + res
    t = tol(x, wd, k, np.abs(bias) + np.abs(res))
    assert np.all(np.abs(out - ref) <= t), np.abs(out - ref).max()


def test_sell_rule_picks_it_where_it_pays(monkeypatch):
    """Unforced, the pack-time rule builds the sliced-ELL layout for a cache-resident 1024 x 1024 f32 matrix at
    70% and, on AVX-512, 90% sparsity (measured 3.6-3.9x dense at batch 1 against 1.5x for the gather GEMV);
    AVX2's 8-lane steps only pay clearly up to ~80%, the scalar ISA has no such kernel."""
    set_layout(monkeypatch, "auto")
    rng = np.random.default_rng(5)
    for sparsity in (0.7, 0.9):
        ip, ix, v = to_csr(sparse_dense(rng, 1024, 1024, sparsity))
        for isa in ISAS:
            want = "csr" if isa == "scalar" or (isa == "avx2" and sparsity > 0.8) else "sell"
            assert K.CsrMatrix(ip, ix, v, 1024, isa=isa).layout == want, (isa, sparsity)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["sell", "csr"])
@pytest.mark.parametrize("shape", [(16, 32), (47, 129), (300, 1000)], ids=lambda s: "N%dK%d" % s)
def test_sell_int8_exact(monkeypatch, isa, layout, shape):
    """Small integers in x and int8 values with scale 1: every partial sum is an integer < 2^24,
    so the result is exact in any summation order and must equal the integer reference."""
    set_layout(monkeypatch, layout)
    n, k = shape
    rng = np.random.default_rng(n * k)
    q = rng.integers(-127, 128, (n, k)).astype(np.int8) * (rng.random((n, k)) < 0.2)
    mask = q != 0
    ip = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
    r, c = np.nonzero(mask)
    a = K.CsrMatrix(ip, c.astype(np.uint16), q[r, c], k, w_scale=np.ones(1, np.float32), isa=isa)
    for m in (1, 2):
        x = rng.integers(-100, 101, (m, k)).astype(np.float32)
        buf, out = guarded(m, n, rng)
        a.run(x, out=out, threads=2)
        check_guard(buf, m, n)
        assert np.array_equal(out, (x.astype(np.int64) @ q.T.astype(np.int64)).astype(np.float32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["sell", "auto"])
@pytest.mark.parametrize("m", [1, 2, 5])
def test_sell_threads_bitwise(monkeypatch, isa, layout, m):
    set_layout(monkeypatch, layout)
    rng = np.random.default_rng(6)
    for n, k, s in [(512, 512, 0.5), (1000, 700, 0.9)]:
        w = sparse_dense(rng, n, k, s)
        a = K.CsrMatrix(*to_csr(w), k, isa=isa)
        x = rng.standard_normal((m, k)).astype(np.float32)
        y1 = a.run(x, threads=1)
        assert np.array_equal(y1, a.run(x, threads=2)) and np.array_equal(y1, a.run(x, threads=3))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["sell", "auto"])
@pytest.mark.parametrize("n", [127, 128, 129, 300])
def test_sell_uneven_rows(monkeypatch, isa, layout, n):
    """Row densities from 0 to 60%: the layout sorts rows by count within 128-row windows (the
    last one partial), the sums must still land on their own rows, with the epilogue per row."""
    set_layout(monkeypatch, layout)
    k = 200
    rng = np.random.default_rng(n)
    dens = rng.random(n) ** 3 * 0.6
    dens[::17] = 0.0
    w = (rng.standard_normal((n, k)) * (rng.random((n, k)) < dens[:, None])).astype(np.float32)
    ip, ix, v = to_csr(w)
    a = K.CsrMatrix(ip, ix, v, k, isa=isa)
    bias = rng.standard_normal(n).astype(np.float32)
    for m in (1, 2, 5):
        x = rng.standard_normal((m, k)).astype(np.float32)
        res = rng.standard_normal((m, n)).astype(np.float32)
        buf, out = guarded(m, n, rng)
        a.run(x, bias=bias, residual=res, act="relu", out=out, threads=2)
        check_guard(buf, m, n)
        lin = x.astype(np.float64) @ w.T.astype(np.float64) + bias + res
        t = tol(x, w, k, np.abs(bias) + np.abs(res))
        assert np.all(np.abs(out - np.maximum(lin, 0)) <= t), m
        assert np.array_equal(out, a.run(x, bias=bias, residual=res, act="relu", threads=1))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["sell", "csr"])
def test_sell_rows_independent_of_batch(monkeypatch, isa, layout):
    """On the batch-1 paths a row's sum does not depend on the rows run with it: the sliced-ELL
    kernel rotates its accumulators the same way for 1..4 activation rows per pass."""
    set_layout(monkeypatch, layout)
    rng = np.random.default_rng(8)
    n, k = 70, 301
    w = sparse_dense(rng, n, k, 0.8)
    a = K.CsrMatrix(*to_csr(w), k, isa=isa)
    x = rng.standard_normal((7, k)).astype(np.float32)
    single = np.concatenate([a.run(x[i:i + 1]) for i in range(7)])
    top = 8 if isa.startswith("avx512") and layout == "sell" else 3  # batches on the batch-1 path
    for m in range(2, top):
        assert np.array_equal(a.run(x[:m], threads=2), single[:m]), m


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("kind", ["f32", "codes_no_zero"])
def test_sell_padding_ignores_nonfinite_x(monkeypatch, isa, bad, kind):
    """Padding slots read an x of their block (column 0 of it) with value 0: an inf/nan there must
    not turn a row that never uses that column into nan (its slice is recomputed from the CSR)."""
    set_layout(monkeypatch, "sell")
    n, k = 20, 70
    w = np.zeros((n, k), np.float32)
    w[0, 5] = 2.0                 # row 0: one non-zero in block 0 -> padded with column 0
    w[1, [0, 1, 2, 3]] = 1.0       # row 1 uses column 0 (the bad one)
    w[3, 40:44] = -1.0             # other blocks
    w[17, 64:70] = 0.5             # the last, partial block of the last slice
    x = np.arange(1, k + 1, dtype=np.float32)[None] / k
    x[0, 0] = bad
    ip, ix, v = to_csr(w)
    if kind == "f32":
        a = K.CsrMatrix(ip, ix, v, k, isa=isa)
    else:  # a table without a 0 entry: padding is marked in the index and masked in the kernel
        tab = np.array([[2.0, 1.0, -1.0, 0.5] + [3.0 + i for i in range(12)]], np.float32)
        codes = np.array([list(tab[0]).index(t) for t in v], np.uint8)
        a = K.CsrMatrix(ip, ix, codes, k, isa=isa, table=tab)
    y = a.run(x)
    ref = (w.astype(np.float64) * np.where(w != 0, x[0], 0)).sum(1)  # only stored products
    assert np.isfinite(y[0, [0, 3, 17]]).all() and np.allclose(y[0, [0, 3, 17]], ref[[0, 3, 17]], rtol=1e-6)
    assert (np.isnan(y[0, 1]) if np.isnan(bad) else y[0, 1] == bad)
    assert np.all(y[0, [2, 4, 5, 16, 18, 19]] == 0)


def test_run_repeat():
    """run(repeat=r) of every kernel class that has it: the kernel runs r times on the same arguments,
    the result bitwise that of one run (a residual and bias included, so a repeat that fed its output
    back would show); repeat < 1 is an InputError."""
    rng = np.random.default_rng(7)
    n, k, m = 40, 96, 3
    wd = sparse_dense(rng, n, k, 0.6)
    x = rng.standard_normal((m, k)).astype(np.float32)
    res = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    idx = rng.integers(0, 16, (n, k))
    cb = formats.Codebook(idx, np.sort(rng.integers(-127, 128, 16)).astype(np.int8)[None], 4, shape=(n, k))
    wq = rng.integers(-127, 128, (n, k)).astype(np.int8)
    w_scale = (rng.random(n) + 0.5).astype(np.float32) / 100
    mats = {
        "csr": (K.CsrMatrix(*to_csr(wd), k), dict(bias=bias, residual=res)),
        "lut": (K.LutMatrix(cb.packed, cb.lut.astype(np.float32), 4, n, k), dict(bias=bias, residual=res)),
        "sgemm": (K.PackedSgemm(wd), dict(bias=bias, residual=res)),
    }
    if K.LutQ8Matrix.has_kernel(None):
        mats["lutq8"] = (K.LutQ8Matrix.codebook(cb.packed, cb.lut, 4, n, k), dict(bias=bias, residual=res))
    runs = {name: (a.run, kw) for name, (a, kw) in mats.items()}
    if hasattr(K, "q8_pack"):
        q = K.q8_pack(wq)
        runs["q8_dynamic"] = (lambda x, **kw: q.run_dynamic(x, w_scale, **kw), dict(bias=bias, residual=res))
    for name, (run, kw) in runs.items():
        once = run(x, **kw)
        out = np.full((m, n), np.nan, np.float32)
        again = run(x, out=out, repeat=3, **kw)
        assert again is out and np.array_equal(once, out), name
        with pytest.raises(core.InputError, match="repeat"):
            run(x, repeat=0, **kw)

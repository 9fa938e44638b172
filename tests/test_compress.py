"""Compression passes: pruning, weight sharing, int8 / log2 quantization, calibration, report.

Statistical properties are checked against numpy float64 computations of the same
definitions; accuracy on the bundled Fashion-MNIST model against fixed thresholds.
"""
import json
import math
import os
import warnings

import numpy as np
import pytest

import slimrt
from slimrt import CompressionError, Model
from slimrt.compress import Recipe, calibrate, compress, decode, format_name, format_table, report
from slimrt.compress.calib import Observer, kl_threshold, uint8_params
from slimrt.compress.prune import n_pruned
from slimrt.compress.quant import decode_log2, quantize_log2
from slimrt.compress.share import kmeans_1d
from slimrt.formats import CSR, Codebook, Dense, Log2, QInt8
from slimrt.ir import OPS

DATA = os.path.join(os.path.dirname(slimrt.__file__), "data")


# ---------------------------------------------------------------- models
def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def dense_model(rng, n, k, scale=1.0):
    m = Model(inputs=[("x", (None, k))])
    y = m.add_node("dense", ["x", m.add_constant("w", rnd(rng, n, k, scale=scale)),
                             m.add_constant("b", rnd(rng, n))], name="fc")
    m.outputs = [y]
    return m


def mlp(rng, dims=(17, 33, 10), scales=None):
    m = Model(inputs=[("x", (None, dims[0]))])
    y = "x"
    for i in range(1, len(dims)):
        s = 1.0 / math.sqrt(dims[i - 1]) if scales is None else scales[i - 1]
        y = m.add_node("dense", [y, m.add_constant(f"w{i}", rnd(rng, dims[i], dims[i - 1], scale=s)),
                                 m.add_constant(f"b{i}", rnd(rng, dims[i], scale=0.1))],
                       dict(act="relu") if i < len(dims) - 1 else None, name=f"fc{i}")
    m.outputs = [y]
    return m


def convnet(rng):
    m = Model(inputs=[("x", (None, 9, 9, 3))])
    y = m.add_node("conv2d", ["x", m.add_constant("c1", rnd(rng, 8, 3, 3, 3, scale=0.3))],
                   dict(pads=[1, 1, 1, 1], act="relu"), name="conv1")
    y = m.add_node("conv2d", [y, m.add_constant("c2", rnd(rng, 6, 2, 2, 4, scale=0.3)),
                              m.add_constant("c2b", rnd(rng, 6))], dict(groups=2, strides=[2, 2]), name="conv2")
    y = m.add_node("flatten", [y])
    y = m.add_node("dense", [y, m.add_constant("fw", rnd(rng, 5, 96, scale=0.1))], name="head")
    m.outputs = [y]
    return m


def matmul_model(rng):
    m = Model(inputs=[("x", (None, 7, 13))])
    y = m.add_node("matmul", ["x", m.add_constant("b", rnd(rng, 13, 31))], name="mm")
    y = m.add_node("matmul", [y, m.add_constant("bt", rnd(rng, 6, 31))], dict(trans_b=1), name="mmt")
    m.outputs = [y]
    return m


def w2d(model, name):
    return model.constants[name].to_dense().reshape(model.constants[name].shape[0], -1).astype(np.float64)


def csr_rows(t):
    return np.repeat(np.arange(t.shape[0]), np.diff(t.indptr.astype(np.int64)))


def check_csr(t, rows, cols):
    assert isinstance(t, CSR) and t.shape == (rows, cols)
    assert t.indices.dtype == (np.uint16 if cols <= 65536 else np.int32)
    ip = t.indptr.astype(np.int64)
    assert ip[0] == 0 and ip[-1] == t.nnz and np.all(np.diff(ip) >= 0)
    for r in range(rows):  # sorted, unique columns in each row
        c = t.indices[ip[r]:ip[r + 1]].astype(np.int64)
        assert np.all(np.diff(c) > 0)


def reference_runs(model):
    """A model run_reference can execute: decoded when the schema lacks conv2d's `kernel` attribute."""
    if "kernel" in OPS["conv2d"][2]:
        return model
    return decode(model)


SHAPES = [(1, 7), (2, 3), (3, 17), (8, 16), (15, 33), (16, 64), (31, 65), (64, 100), (7, 1)]


# ---------------------------------------------------------------- pruning
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("shape", SHAPES)
def test_magnitude_pruning_reaches_sparsity(rng, shape, sparsity):
    m = dense_model(rng, *shape)
    w = w2d(m, "w")
    if n_pruned(w.size, sparsity) >= w.size:
        with pytest.raises(CompressionError, match="remove all"):
            compress(m, prune=sparsity)
        return
    c = compress(m, prune=sparsity)
    t = c.constants["w"]
    if sparsity == 0.0:
        assert isinstance(t, Dense) and np.array_equal(t.data, m.constants["w"].data)
        return
    check_csr(t, *shape)
    assert abs(t.nnz - (1 - sparsity) * w.size) <= 1
    assert isinstance(t.values, Dense)
    d = t.to_dense()
    kept = np.zeros(shape, dtype=bool)
    kept[csr_rows(t), t.indices.astype(np.int64)] = True
    assert np.array_equal(d[kept], w[kept].astype(np.float32))  # survivors exact
    if (~kept).any():
        assert np.abs(w[kept]).min() >= np.abs(w[~kept]).max()  # the smallest magnitudes went
    assert np.array_equal(c.constants["b"].data, m.constants["b"].data)  # biases stay dense fp32


def test_global_pruning_one_threshold(rng):
    m = mlp(rng, (40, 64, 48, 10), scales=[1.0, 0.2, 3.0])
    c = compress(m, prune=0.7, prune_mode="global")
    ws = [w2d(m, f"w{i}") for i in (1, 2, 3)]
    ts = [c.constants[f"w{i}"] for i in (1, 2, 3)]
    total = sum(w.size for w in ws)
    assert abs(sum(t.nnz for t in ts) - 0.3 * total) <= 1
    kept_min = min(np.abs(t.to_dense()[t.to_dense() != 0]).min() for t in ts)
    dropped_max = max(np.abs(w[t.to_dense() == 0]).max() for w, t in zip(ws, ts))
    assert kept_min >= dropped_max
    # the layers keep very different fractions: one threshold, not one sparsity per layer
    dens = [t.nnz / w.size for w, t in zip(ws, ts)]
    assert dens[1] < 0.1 < 0.5 < dens[2]


def test_global_pruning_refuses_to_remove_a_layer(rng):
    m = mlp(rng, (20, 30, 10), scales=[1.0, 1e-6])
    with pytest.raises(CompressionError, match="every weight of layer 'w2'"):
        compress(m, prune=0.9, prune_mode="global")
    # with its own per-layer sparsity the layer leaves the global pool
    c = compress(m, prune=0.9, prune_mode="global", per_layer={"fc2": {"prune": 0.5}})
    assert abs(c.constants["w2"].nnz - 150) <= 1
    assert abs(c.constants["w1"].nnz - 60) <= 1


@pytest.mark.parametrize("nm", [(2, 4), (1, 4), (4, 8), (1, 2), (3, 7)])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 8, 15, 17, 33])
def test_nm_pattern_exact(rng, nm, k):
    n, mm = nm
    m = dense_model(rng, 5, k)
    w = w2d(m, "w")
    c = compress(m, prune_mode="n:m", n_m=[n, mm])
    t = c.constants["w"]
    check_csr(t, 5, k)
    kept = np.zeros(w.shape, dtype=bool)
    kept[csr_rows(t), t.indices.astype(np.int64)] = True
    for g in range(0, k, mm):
        blk, wb = kept[:, g:g + mm], np.abs(w[:, g:g + mm])
        assert np.all(blk.sum(axis=1) == min(n, blk.shape[1]))
        for r in range(5):
            if (~blk[r]).any():
                assert wb[r][blk[r]].min() >= wb[r][~blk[r]].max()


def test_nm_on_conv_is_along_flattened_k_and_sets_kernel(rng):
    m = convnet(rng)
    c = compress(m, prune_mode="n:m", n_m=[2, 4], per_layer={"head": None})
    t = c.constants["c1"]
    check_csr(t, 8, 27)
    conv1 = next(n for n in c.nodes if n.name == "conv1")
    assert conv1.attrs["kernel"] == [3, 3]
    assert isinstance(c.constants["fw"], Dense)
    kept = t.to_dense().reshape(8, 27) != 0
    for g in range(0, 27, 4):
        assert np.all(kept[:, g:g + 4].sum(axis=1) <= 2)
    dec = decode(c)
    assert dec.constants["c1"].shape == (8, 3, 3, 3)
    assert "kernel" not in next(n for n in dec.nodes if n.name == "conv1").attrs
    w = m.constants["c1"].data
    assert np.array_equal(dec.constants["c1"].data[dec.constants["c1"].data != 0], w[dec.constants["c1"].data != 0])


def test_nm_conflicting_sparsity_is_refused(rng):
    with pytest.raises(CompressionError, match="conflicts with 2:4"):
        compress(dense_model(rng, 4, 8), prune=0.8, prune_mode="n:m")


# ---------------------------------------------------------------- weight sharing
def nearest_ok(w, lut_row, got, tol=1e-6):
    best = np.abs(w[:, None] - lut_row[None, :].astype(np.float64)).min(axis=1)
    return np.all(np.abs(w - got) <= best + tol * max(1.0, np.abs(w).max()))


@pytest.mark.parametrize("k", [2, 3, 16, 256])
@pytest.mark.parametrize("mode", ["per_tensor", "per_channel"])
@pytest.mark.parametrize("init", ["kmeans++", "linear"])
def test_share_distinct_values_and_nearest_assignment(rng, k, mode, init):
    m = dense_model(rng, 31, 300)
    w = w2d(m, "w")
    c = compress(m, share=k, share_mode=mode, share_init=init)
    t = c.constants["w"]
    assert isinstance(t, Codebook) and t.bits == max(1, math.ceil(math.log2(k)))
    assert t.lut.shape == ((1, k) if mode == "per_tensor" else (31, k)) and t.lut.dtype == np.float32
    d = t.to_dense().astype(np.float64)
    if mode == "per_tensor":
        assert np.unique(d).size <= k
        assert nearest_ok(w.ravel(), t.lut[0], d.ravel())
    else:
        for r in range(31):
            assert np.unique(d[r]).size <= k
            assert nearest_ok(w[r], t.lut[r], d[r])


def test_share_is_a_lloyd_fixed_point(rng):
    m = dense_model(rng, 16, 200)
    w = w2d(m, "w").ravel()
    c = compress(m, share=16, kmeans_iters=10000, kmeans_tol=0.0)
    t = c.constants["w"]
    idx = t.indices.astype(np.int64)
    for j in np.unique(idx):
        assert abs(w[idx == j].mean() - t.lut[0, j]) <= 1e-6 * np.abs(w).max()


def optimal_sse_1d(x, k):
    """The globally optimal k-means error in 1-D (dynamic programming over the sorted points)."""
    xs = np.sort(np.asarray(x, dtype=np.float64))
    n = xs.size
    c1, c2 = np.concatenate([[0], np.cumsum(xs)]), np.concatenate([[0], np.cumsum(xs ** 2)])
    j, i = np.arange(n + 1)[:, None], np.arange(n + 1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        cost = np.where(j < i, (c2[i] - c2[j]) - (c1[i] - c1[j]) ** 2 / np.maximum(i - j, 1), np.inf)
    best = cost[0].copy()  # best[i]: the first i points in one cluster
    for _ in range(k - 1):
        best = np.min(best[:, None] + cost, axis=0)
    return best[n]


@pytest.mark.parametrize("k", [2, 5, 16, 64])
def test_kmeans_1d_close_to_the_global_optimum(k):
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.laplace(size=300), rng.normal(3, 0.2, 100)])
    rng.shuffle(x)
    c, lab = kmeans_1d(x, k, "kmeans++", np.random.default_rng(0))
    assert np.all(np.diff(c) > 0) and lab.min() >= 0 and lab.max() < k
    assert np.array_equal(lab, np.argmin(np.abs(x[:, None] - c[None, :]), axis=1))
    ours = float(((x - c[lab]) ** 2).sum())
    assert ours <= 1.1 * optimal_sse_1d(x, k)
    # well separated clusters: exact recovery of their means
    y = np.concatenate([np.full(10, -5.0), np.full(7, 1.0), np.full(3, 9.0)]) + np.tile([0.0, 1e-3], 10)
    c3, _ = kmeans_1d(y, 3, "kmeans++", np.random.default_rng(1))
    assert np.allclose(c3, [y[:10].mean(), y[10:17].mean(), y[17:].mean()])


def test_share_more_centroids_than_distinct_values_fails():
    m = Model(inputs=[("x", (None, 8))])
    w = np.tile(np.array([0.5, -0.25, 1.0, 2.0], dtype=np.float32), (4, 2))
    m.outputs = [m.add_node("dense", ["x", m.add_constant("w", w)], name="fc")]
    with pytest.raises(CompressionError, match="4 distinct values into 8 centroids"):
        compress(m, share=8)
    c = compress(m, share=4)  # exactly as many: every value kept exactly
    assert np.array_equal(c.constants["w"].to_dense(), w)
    # per channel: a channel with fewer distinct values than k keeps them all
    w2 = w.copy()
    w2[0] = 0.5
    m.constants["w"] = Dense(w2)
    c = compress(m, share=4, share_mode="per_channel")
    assert np.array_equal(c.constants["w"].to_dense(), w2)


def test_share_int8_centroids_lie_on_the_int8_grid(rng):
    m = dense_model(rng, 12, 90)
    w = w2d(m, "w")
    for mode in ("per_tensor", "per_channel"):
        t = compress(m, share=16, share_mode=mode, quant="int8").constants["w"]
        assert isinstance(t, Codebook)
        amax = np.abs(w).max() if mode == "per_tensor" else np.abs(w).max(axis=1)
        scale = np.float32(amax / 127.0).astype(np.float64).reshape(-1, 1)
        q = t.lut.astype(np.float64) / scale
        assert np.allclose(q, np.rint(q), atol=1e-4) and np.abs(np.rint(q)).max() <= 127


# ---------------------------------------------------------------- int8 / log2
@pytest.mark.parametrize("shape", SHAPES)
def test_int8_per_channel(rng, shape):
    m = dense_model(rng, *shape)
    w = w2d(m, "w")
    t = compress(m, quant="int8").constants["w"]
    assert isinstance(t, QInt8) and t.axis == 0 and t.q.dtype == np.int8 and t.shape == shape
    q = t.q.reshape(shape).astype(np.int64)
    assert q.min() >= -127 and q.max() <= 127
    want_scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    assert np.array_equal(t.scale, want_scale)
    assert np.array_equal(q, np.clip(np.rint(w / t.scale.astype(np.float64)[:, None]), -127, 127))
    assert np.all(np.abs(q).max(axis=1) == 127)
    err = np.abs(t.to_dense().astype(np.float64) - w)
    assert np.all(err <= t.scale.astype(np.float64)[:, None] * (0.5 + 1e-5))


def test_int8_rounds_half_to_even_and_handles_zero_channels():
    m = Model(inputs=[("x", (None, 5))])
    w = np.array([[127, 0.5, 1.5, 2.5, -2.5], [0, 0, 0, 0, 0]], dtype=np.float32)
    m.outputs = [m.add_node("dense", ["x", m.add_constant("w", w)], name="fc")]
    t = compress(m, quant="int8").constants["w"]
    assert t.q.reshape(2, 5).tolist() == [[127, 0, 2, 2, -2], [0, 0, 0, 0, 0]]
    assert t.scale.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("shape", [(1, 7), (3, 17), (16, 64), (31, 65)])
def test_log2_codes_and_error_bounds(rng, bits, shape):
    m = dense_model(rng, *shape)
    w = w2d(m, "w")
    t = compress(m, quant="log2", log2_bits=bits).constants["w"]
    assert isinstance(t, Log2) and t.bits == bits and t.axis == 0
    codes = t.codes.reshape(shape).astype(np.int64)
    maxmag = (1 << (bits - 1)) - 1
    mag, neg = codes & maxmag, codes >> (bits - 1)
    assert np.all((codes == 0) | ((mag >= 1) & (mag <= maxmag)))
    s = t.scale.astype(np.float64)[:, None]
    amax = np.abs(w).max(axis=1, keepdims=True)
    assert np.all(s <= amax * (1 + 1e-6)) and np.all(s > amax / 2)
    d = t.to_dense().astype(np.float64)
    nz = codes != 0
    assert np.all(neg[nz] == (w[nz] < 0))
    smallest = np.broadcast_to(s * 2.0 ** -(maxmag - 1), shape)
    inside = nz & (np.abs(w) <= s) & (np.abs(w) >= smallest * 2 ** -0.5)  # rounded in the log domain
    ratio = np.abs(d[inside]) / np.abs(w[inside])
    assert np.all(ratio >= 2 ** -0.5 - 1e-6) and np.all(ratio <= 2 ** 0.5 + 1e-6)
    above = nz & (np.abs(w) > s)  # clipped to the top level
    assert np.all(np.abs(d[above]) == np.broadcast_to(s, shape)[above].astype(np.float32))
    below = nz & (np.abs(w) < smallest * 2 ** -0.5)  # nearer to the smallest level than to zero
    assert np.all(np.abs(d[below]) == smallest[below].astype(np.float32))
    assert np.all(np.abs(w[below]) >= smallest[below] * (0.5 - 1e-6))
    assert np.all(np.abs(w)[~nz] <= smallest[~nz] * (0.5 + 1e-6))
    # the scale search never does worse than the plain per-channel max
    ch = np.repeat(np.arange(shape[0]), shape[1])
    c1, s1 = quantize_log2(w.ravel(), ch, shape[0], bits, search=1)
    e1 = ((decode_log2(c1, s1.astype(np.float64)[ch], bits) - w.ravel()) ** 2).reshape(shape).sum(axis=1)
    e = ((d - w) ** 2).sum(axis=1)
    assert np.all(e <= e1 * (1 + 1e-6) + 1e-12)


def test_log2_and_share_cannot_combine(rng):
    with pytest.raises(CompressionError, match="log2"):
        compress(dense_model(rng, 4, 8), share=4, quant="log2")


# ---------------------------------------------------------------- prune + values
@pytest.mark.parametrize("values", ["codebook", "codebook_pc", "int8", "log2", "codebook_int8"])
def test_pruned_values_formats(rng, values):
    m = dense_model(rng, 17, 70)
    w = w2d(m, "w")
    kw = dict(codebook=dict(share=8), codebook_pc=dict(share=8, share_mode="per_channel"),
              int8=dict(quant="int8"), log2=dict(quant="log2"),
              codebook_int8=dict(share=8, quant="int8"))[values]
    t = compress(m, prune=0.75, **kw).constants["w"]
    check_csr(t, 17, 70)
    assert abs(t.nnz - 0.25 * w.size) <= 1
    v = t.values
    assert v.shape == (t.nnz,)
    rows = csr_rows(t)
    surv = w[rows, t.indices.astype(np.int64)]
    d = t.to_dense().astype(np.float64)[rows, t.indices.astype(np.int64)]
    if values.startswith("codebook"):
        assert isinstance(v, Codebook) and v.bits == 3
        if values == "codebook_pc":
            assert v.axis == 0 and v.lut.shape == (17, 8)
            for r in range(17):
                assert np.unique(d[rows == r]).size <= 8
        else:
            assert v.axis == -1 and np.unique(d).size <= 8  # only the survivors were clustered
            assert nearest_ok(surv, v.lut[0], d)
    elif values == "int8":
        assert isinstance(v, QInt8) and v.axis == 0 and v.channels == 17
        amax = np.zeros(17)
        np.maximum.at(amax, rows, np.abs(surv))
        assert np.array_equal(v.scale, (amax / 127).astype(np.float32))
        assert np.all(np.abs(d - surv) <= v.scale.astype(np.float64)[rows] * (0.5 + 1e-5))
    else:
        assert isinstance(v, Log2) and v.axis == 0 and v.channels == 17
        nz = v.codes != 0
        r = np.abs(d[nz]) / np.abs(surv[nz])
        s = v.scale.astype(np.float64)[rows][nz]
        inside = np.abs(surv[nz]) <= s
        assert np.all(r[inside] <= 2 ** 0.5 + 1e-6) and np.all(r[inside] >= 2 ** -0.5 - 1e-6)


def test_compress_conv_and_matmul_weights(rng):
    m = convnet(rng)
    x = rnd(rng, 3, 9, 9, 3)
    ref = m.run_reference(x)[0]
    c = compress(m, quant="int8")
    assert all(isinstance(c.constants[k], QInt8) for k in ("c1", "c2", "fw"))
    assert c.constants["c1"].shape == (8, 3, 3, 3)  # dense formats keep the 4-D conv shape
    assert isinstance(c.constants["c2b"], Dense)
    got = c.run_reference(x)[0]
    assert np.abs(got - ref).max() <= 0.03 * np.abs(ref).max()

    mm = matmul_model(rng)
    x = rnd(rng, 2, 7, 13)
    ref = mm.run_reference(x)[0]
    c = compress(mm, prune=0.5)
    node = next(n for n in c.nodes if n.name == "mm")
    assert node.attrs["trans_b"] == 1 and c.constants["b"].shape == (31, 13)  # [K, N] -> [N, K]
    check_csr(c.constants["b"], 31, 13)
    check_csr(c.constants["bt"], 6, 31)
    assert mm.constants["b"].shape == (13, 31)
    # exact: the pruned model is the original with the pruned weights set to zero
    dense = mm.copy()
    for name in ("b", "bt"):
        d = c.constants[name].to_dense()
        dense.constants[name] = Dense(d.T.copy() if name == "b" else d)
    assert np.allclose(c.run_reference(x)[0], dense.run_reference(x)[0], rtol=1e-6, atol=1e-6)


def test_conv_pruned_model_runs_and_matches_masked_weights(rng):
    m = convnet(rng)
    x = rnd(rng, 2, 9, 9, 3)
    c = compress(m, prune=0.6, quant="int8")
    masked = m.copy()
    dec = decode(c)
    for k in ("c1", "c2", "fw"):
        masked.constants[k] = dec.constants[k]
        assert dec.constants[k].shape == m.constants[k].shape
    assert np.array_equal(reference_runs(c).run_reference(x)[0], masked.run_reference(x)[0])


# ---------------------------------------------------------------- model-level behaviour
def test_input_model_untouched(rng):
    m = convnet(rng)
    snap = {k: (type(t), [b.copy() for b in t.buffers()]) for k, t in m.constants.items()}
    nodes = [(n.op, list(n.inputs), list(n.outputs), dict(n.attrs), n.name) for n in m.nodes]
    meta = dict(m.metadata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        c = compress(m, prune=0.5, share=4, calib=rnd(rng, 4, 9, 9, 3))
    assert c is not m
    assert {k: type(t) for k, t in m.constants.items()} == {k: v[0] for k, v in snap.items()}
    for k, t in m.constants.items():
        assert all(np.array_equal(a, b) for a, b in zip(t.buffers(), snap[k][1]))
    assert [(n.op, n.inputs, n.outputs, n.attrs, n.name) for n in m.nodes] == nodes
    assert m.metadata == meta and "act_quant" in c.metadata


def test_deterministic_for_a_seed(rng):
    m = mlp(rng, (40, 64, 10))

    def bufs(c):
        return {k: [b.tobytes() for b in t.buffers()] for k, t in c.constants.items()}

    a = compress(m, prune=0.5, share=16, seed=3)
    b = compress(m, prune=0.5, share=16, seed=3)
    assert bufs(a) == bufs(b)
    assert bufs(compress(m, share=16, share_mode="per_channel", seed=1)) == \
        bufs(compress(m, share=16, share_mode="per_channel", seed=1))


def test_per_layer_overrides_and_skip(rng):
    m = mlp(rng, (20, 30, 30, 10))
    c = compress(m, quant="int8", per_layer={"fc1": {"quant": "log2"}, "w2": None, "fc3": {"skip": True}})
    assert isinstance(c.constants["w1"], Log2)
    assert isinstance(c.constants["w2"], Dense) and isinstance(c.constants["w3"], Dense)
    c = compress(m, prune=0.5, per_layer={"fc2": {"prune": 0.9, "share": 4}})
    assert abs(c.constants["w2"].nnz - 90) <= 1 and isinstance(c.constants["w2"].values, Codebook)
    assert isinstance(c.constants["w1"].values, Dense)
    with pytest.raises(CompressionError, match="match no compressible layer"):
        compress(m, per_layer={"fc9": {"prune": 0.5}})


def test_optimize_folds_batch_norm_before_compressing(rng):
    m = Model(inputs=[("x", (None, 6, 6, 2))])
    y = m.add_node("conv2d", ["x", m.add_constant("w", rnd(rng, 4, 3, 3, 2))], dict(pads=[1, 1, 1, 1]), name="cv")
    g = np.array([1.5, -0.7, 0.3, 2.0], dtype=np.float32)  # a negative gamma flips a channel's sign
    y = m.add_node("batch_norm", [y, m.add_constant("g", g), m.add_constant("be", rnd(rng, 4)),
                                  m.add_constant("mu", rnd(rng, 4)), m.add_constant("var", np.ones(4, np.float32))])
    m.outputs = [y]
    c = compress(m, quant="log2")
    assert [n.op for n in c.nodes] == ["conv2d"] and isinstance(c.constants["w"], Log2)
    c2 = compress(m, quant="log2", optimize=False)
    assert [n.op for n in c2.nodes] == ["conv2d", "batch_norm"]
    x = rnd(rng, 2, 6, 6, 2)
    ref = m.run_reference(x)[0]
    assert np.abs(c.run_reference(x)[0] - ref).max() <= 0.5 * np.abs(ref).max()


# ---------------------------------------------------------------- recipes and errors
def test_recipe_json_round_trip(rng, tmp_path):
    d = {"prune": 0.8, "prune_mode": "n:m", "n_m": [2, 4], "share": 16, "share_mode": "per_channel",
         "share_init": "linear", "quant": "int8", "calib": "entropy", "percentile": 99.9, "seed": 5,
         "per_layer": {"fc1": {"prune": 0.5, "prune_mode": "magnitude"}, "w2": None}}
    d["prune"] = 0.5
    r = Recipe.from_json(json.dumps(d))
    assert Recipe.from_json(r.to_json()).to_dict() == r.to_dict()
    assert {k: r.to_dict()[k] for k in d} == d
    p = tmp_path / "recipe.json"
    p.write_text(r.to_json())
    assert Recipe.from_json(str(p)).to_dict() == r.to_dict()
    assert Recipe.from_json(p).to_dict() == r.to_dict()
    m = mlp(rng, (20, 30, 10))
    a = compress(m, recipe=r)
    b = compress(m, prune=0.5, prune_mode="n:m", n_m=[2, 4], share=16, share_mode="per_channel",
                 share_init="linear", quant="int8", seed=5, per_layer=d["per_layer"])
    for k in a.constants:
        assert [x.tobytes() for x in a.constants[k].buffers()] == [x.tobytes() for x in b.constants[k].buffers()]
    assert json.loads(a.metadata["compression"])["prune_mode"] == "n:m"
    # the dict forms of prune and share
    e = compress(m, prune={"sparsity": 0.5, "mode": "n:m", "n_m": [2, 4]},
                 share={"k": 16, "mode": "per_channel", "init": "linear"}, quant="int8", seed=5,
                 per_layer=d["per_layer"])
    for k in a.constants:
        assert [x.tobytes() for x in a.constants[k].buffers()] == [x.tobytes() for x in e.constants[k].buffers()]
    # per-layer fc1: magnitude 0.5; w2 skipped
    assert abs(a.constants["w1"].nnz - 300) <= 1 and isinstance(a.constants["w2"], Dense)


@pytest.mark.parametrize("kwargs, match", [
    (dict(prune=1.0), r"sparsity \(prune\) must be in \[0, 1\)"),
    (dict(prune=-0.1), r"must be in \[0, 1\)"),
    (dict(prune=0.5, prune_mode="random"), "prune_mode must be one of"),
    (dict(prune_mode="n:m", n_m=[4, 2]), "1 <= N < M"),
    (dict(share=1), "2..256"),
    (dict(share=257), "2..256"),
    (dict(share=4.0), "2..256"),
    (dict(share=4, share_mode="per_row"), "share_mode must be one of"),
    (dict(share=4, share_init="random"), "share_init must be one of"),
    (dict(quant="int4"), "quant must be"),
    (dict(quant="log2", log2_bits=9), "log2_bits"),
    (dict(calib_method="kl"), "calib method must be one of"),
    (dict(percentile=20), "percentile"),
    (dict(banana=1), "unknown option 'banana'"),
    (dict(per_layer={"fc1": {"sparsity": 0.5}}), r"unknown key\(s\) \['sparsity'\]"),
    (dict(calib="entropy"), "calib_method='entropy'"),
])
def test_bad_recipes_fail_clearly(rng, kwargs, match):
    with pytest.raises(CompressionError, match=match):
        compress(mlp(rng, (20, 30, 10)), **kwargs)


def test_bad_recipe_json():
    with pytest.raises(CompressionError, match="not valid JSON"):
        Recipe.from_json("{prune: 0.5")
    with pytest.raises(CompressionError, match="unknown recipe key"):
        Recipe.from_json('{"prune": 0.5, "sparsity": 0.5}')
    with pytest.raises(CompressionError, match="does not exist"):
        Recipe.from_json("/nonexistent/recipe.json")


def test_refuses_already_compressed_weights(rng):
    c = compress(mlp(rng, (20, 30, 10)), quant="int8")
    with pytest.raises(CompressionError, match="already stored as int8"):
        compress(c, share=4)


def test_pruning_a_layer_away_fails(rng):
    with pytest.raises(CompressionError, match="would remove all"):
        compress(dense_model(rng, 1, 3), prune=0.9)


# ---------------------------------------------------------------- calibration
def _values(m, x):
    """Every value of the model on x (float64), via the reference executor."""
    tmp = m.copy()
    names = [m.inputs[0].name] + [o for n in m.nodes for o in n.outputs]
    tmp.outputs = names[1:]
    return dict(zip(names, [x.astype(np.float64)] + [v.astype(np.float64) for v in tmp.run_reference(x)]))


def test_calibration_minmax_exact_and_batch_independent(rng):
    m = mlp(rng, (17, 33, 10))
    x = rnd(rng, 50, 17)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = calibrate(m, x, "minmax", batch_size=7)
        again = calibrate(m, x, "minmax", batch_size=50)
    assert got == again
    vals = _values(m, x)
    assert set(got) == set(vals)
    for k, v in vals.items():
        lo, hi = min(v.min(), 0.0), max(v.max(), 0.0)
        scale, zp = got[k]
        assert scale == pytest.approx((hi - lo) / 255, rel=1e-5)
        assert zp == int(np.clip(np.rint(-lo / ((hi - lo) / 255)), 0, 255))
    assert got["fc1"][1] == 0  # relu output: zero point 0


def test_calibration_percentile_and_entropy(rng):
    m = mlp(rng, (17, 33, 10))
    x = rnd(rng, 200, 17)
    x[0, 0] = 60.0  # one outlier
    vals = _values(m, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pct = calibrate(m, x, "percentile", percentile=99.0)
        ent = calibrate(m, x, "entropy")
        mm = calibrate(m, x, "minmax")
    for k, v in vals.items():
        lo, hi = np.percentile(v, 1.0), np.percentile(v, 99.0)
        lo, hi = min(lo, 0), max(hi, 0)
        span = max(v.max(), 0) - min(v.min(), 0)
        scale, zp = pct[k]
        assert scale * 255 == pytest.approx(hi - lo, abs=4 * span / 8192 + 1e-6)
        assert ent[k][0] <= mm[k][0] * (1 + 1e-6)
    assert pct["x"][0] < mm["x"][0] / 2  # the outlier is clipped
    assert ent["fc1"][1] == 0 and ent["x"][1] == 128  # non-negative: [0, T]; signed: [-T, T]


def test_compress_records_act_quant_metadata(rng):
    m = mlp(rng, (17, 33, 10))
    x = rnd(rng, 20, 17)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        c = compress(m, quant="int8", calib=x, calib_method="percentile", percentile=99.9)
        c2 = compress(m, quant="int8", calib={"x": x})
    aq = json.loads(c.metadata["act_quant"])
    assert set(aq) == {"x", "fc1", "fc2"} and all(len(v) == 2 and v[0] > 0 for v in aq.values())
    assert all(0 <= v[1] <= 255 and isinstance(v[1], int) for v in aq.values())
    assert json.loads(c2.metadata["act_quant"]).keys() == aq.keys()


@pytest.mark.parametrize("data, match", [
    (np.zeros((5, 16), np.float32), r"has shape \(5, 16\), expected \(N, 17\)"),
    (np.zeros((5, 17, 1), np.float32), r"expected \(N, 17\)"),
    ({"y": np.zeros((5, 17))}, r"missing \['x'\]"),
    (np.zeros((0, 17), np.float32), "no samples"),
])
def test_calibration_data_of_wrong_shape_fails(rng, data, match):
    with pytest.raises(CompressionError, match=match):
        compress(mlp(rng, (17, 33, 10)), quant="int8", calib=data)


def test_observer_histogram_is_exact_under_range_growth(rng):
    ob = Observer()
    chunks = [rng.standard_normal(1000) * s for s in (1e-3, 1.0, 50.0, 0.1)] + [np.zeros(10)]
    for ch in chunks:
        ob.update(ch)
    allx = np.concatenate(chunks)
    assert ob.hist.sum() == allx.size == ob.count and ob.hist.size <= 8192
    edges = ob.edges()
    assert np.array_equal(np.histogram(allx, bins=edges)[0], ob.hist)  # bins aligned at 0, exact counts
    for q in (0.01, 0.5, 0.99):
        assert abs(ob.quantile(q) - np.quantile(allx, q)) <= 2 * ob.width
    h, w = ob.abs_hist()
    assert h.size == 2048 and h.sum() == pytest.approx(allx.size)
    zeros_only = Observer()
    zeros_only.update(np.zeros(5))
    assert zeros_only.range("entropy") == (0.0, 0.0) and uint8_params(0.0, 0.0) == [1.0, 0]


def test_kl_threshold_clips_long_tails():
    h = np.zeros(2048)
    h[:300] = np.exp(-np.arange(300) / 40.0) * 1e5
    h[2000] = 1  # a lone outlier far out
    t = kl_threshold(h, 128)
    assert 128 <= t < 1000
    flat = np.ones(2048)
    assert kl_threshold(flat, 128) > 1800  # uniform data: keep (nearly) everything


# ---------------------------------------------------------------- report
def test_report_rows_and_table(rng):
    m = mlp(rng, (17, 33, 10))
    c = compress(m, prune=0.5, share=4, per_layer={"fc2": {"prune": 0.0, "quant": "int8", "share": None}})
    x = rnd(rng, 40, 17)
    y = np.argmax(m.run_reference(x)[0], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = report(m, c, eval_data=(x, y), engine="reference")
    assert [r["layer"] for r in rows] == ["fc1", "fc2", "total"]
    r1, r2, tot = rows
    assert r1["format"] == "csr(codebook2)" and r2["format"] == "int8"
    assert r1["bytes"] == c.constants["w1"].nbytes and r1["fp32_bytes"] == 33 * 17 * 4
    assert r1["ratio"] == pytest.approx(r1["fp32_bytes"] / r1["bytes"])
    assert r1["sparsity"] == pytest.approx(0.5, abs=1 / 561) and 0 < r1["weight_rel_err"] < 1
    assert r2["weight_rel_err"] < 0.01
    assert tot["bytes"] == r1["bytes"] + r2["bytes"] and tot["fp32_bytes"] == (33 * 17 + 10 * 33) * 4
    assert tot["accuracy_before"] == 1.0 and 0 <= tot["accuracy_after"] <= 1
    assert 0 < tot["cosine"] <= 1 and tot["max_rel_err"] >= 0
    table = format_table(rows)
    assert table.splitlines()[0].startswith("| layer | op | weight") and "csr(codebook2)" in table
    assert "**total**" in table and "accuracy: 100.00% ->" in table
    # fp32 outputs from elsewhere; a lone model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows2 = report(c, eval_data=(x, None), reference=m.run_reference(x), engine="reference")
        assert rows2[-1]["cosine"] == pytest.approx(tot["cosine"])
        assert rows2[0]["weight_rel_err"] is None
    assert format_name(Dense(np.zeros(3, np.float16))) == "fp16"


# ---------------------------------------------------------------- file round trip
def test_save_load_round_trip(rng, tmp_path):
    try:
        import slimrt.slimfile  # noqa: F401
    except ImportError:
        pytest.skip("the .slim writer (python/slimrt/slimfile.py) is not in the tree yet")
    m = convnet(rng)
    x = rnd(rng, 2, 9, 9, 3)
    for kw in (dict(quant="int8"), dict(share=16), dict(quant="log2"), dict(prune=0.5, share=4),
               dict(prune=0.5, quant="int8", per_layer={"conv1": None, "conv2": None})):
        c = compress(m, calib=x, **kw)
        path = str(tmp_path / "m.slim")
        c.save(path, optimize=False)
        back = slimrt.load(path)
        for k, t in c.constants.items():
            u = back.constants[k]
            assert type(u) is type(t) and format_name(u) == format_name(t)
            assert all(np.array_equal(a, b) for a, b in zip(t.buffers(), u.buffers()))
        assert json.loads(back.metadata["act_quant"]) == json.loads(c.metadata["act_quant"])


# ---------------------------------------------------------------- Fashion-MNIST accuracy
@pytest.fixture(scope="module")
def fashion():
    try:
        m = slimrt.from_keras(os.path.join(DATA, "fashion_cnn.keras"))
    except Exception as e:  # pragma: no cover - the importer is another agent's work
        pytest.skip(f"slimrt.from_keras cannot load the bundled model yet: {e}")
    with np.load(os.path.join(DATA, "fashion_test500.npz")) as d:
        x, y = d["x"][..., None].astype(np.float32), d["y"].astype(np.int64)
    acc = accuracy(m.optimize(), x, y)  # the same function, faster to evaluate
    assert acc > 0.85
    return m, x, y, acc


def accuracy(model, x, y):
    out = reference_runs(model).run_reference(x)[0]
    return float(np.mean(np.argmax(out, axis=1) == y))


def weight_bytes(model):
    from slimrt.compress import weight_refs

    return sum(model.constants[r.weight].nbytes for r in weight_refs(model))


FP32_WEIGHT_BYTES = (32 * 9 + 64 * 9 * 32 + 128 * 3136 + 10 * 128) * 4


def test_fashion_int8_within_half_a_point(fashion):
    m, x, y, acc = fashion
    c = compress(m, quant="int8")
    assert FP32_WEIGHT_BYTES / weight_bytes(c) > 3.9
    assert accuracy(c, x, y) >= acc - 0.005


def test_fashion_codebook4_within_one_point(fashion):
    m, x, y, acc = fashion
    c = compress(m, share=16, share_mode="per_channel")
    assert all(format_name(c.constants[w]) == "codebook4" for w in
               ("conv2d/kernel", "conv2d_1/kernel", "dense/kernel", "dense_1/kernel"))
    assert FP32_WEIGHT_BYTES / weight_bytes(c) > 7.4
    assert accuracy(c, x, y) >= acc - 0.01


def test_fashion_prune80_codebook4_within_1_5_points(fashion):
    """80% of the dense layer (95% of the weights) pruned + 4-bit per-channel codebook everywhere. The
    convolutions and the last layer keep all their weights: without retraining, pruning 80% of them costs
    7 (conv2d_1) to 47 (conv2d) points.

    Relative column codes (3 bits each here, picked by csr_index="auto") make a kept weight cost
    ~7 bits instead of 20 with uint16 indices, which is what reaches 15x at this sparsity."""
    m, x, y, acc = fashion
    c = compress(m, prune=0.8, share=16, share_mode="per_channel",
                 per_layer={"conv2d": {"prune": 0.0}, "conv2d_1": {"prune": 0.0}, "dense_1": {"prune": 0.0}})
    assert format_name(c.constants["dense/kernel"]) == "csr(codebook4)"
    assert abs(c.constants["dense/kernel"].nnz - 0.2 * 128 * 3136) <= 1
    assert 1 <= c.constants["dense/kernel"].index_bits <= 8
    assert FP32_WEIGHT_BYTES / weight_bytes(c) >= 15.0
    assert accuracy(c, x, y) >= acc - 0.015
    absolute = compress(m, prune=0.8, share=16, share_mode="per_channel", csr_index="absolute",
                        per_layer={"conv2d": {"prune": 0.0}, "conv2d_1": {"prune": 0.0}, "dense_1": {"prune": 0.0}})
    assert absolute.constants["dense/kernel"].index_bits == 0
    assert 7.0 < FP32_WEIGHT_BYTES / weight_bytes(absolute) < 8.5


def test_fashion_15x_smaller_within_1_5_points(fashion):
    m, x, y, acc = fashion
    c = compress(m, share=16, share_mode="per_channel", per_layer={"dense": {"prune": 0.92}})
    assert FP32_WEIGHT_BYTES / weight_bytes(c) >= 15.0
    assert accuracy(c, x, y) >= acc - 0.015


def test_fashion_calibration(fashion):
    m, x, y, acc = fashion
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        c = compress(m, quant="int8", calib=x[:64], calib_method="entropy")
    aq = json.loads(c.metadata["act_quant"])
    assert set(aq) == {m.inputs[0].name} | {o for n in c.nodes for o in n.outputs}
    assert aq[m.inputs[0].name][1] == 0  # pixels are non-negative
    assert all(s > 0 for s, _ in aq.values())


def test_fashion_codebook4_int8_runs_the_int8_table_kernel(fashion):
    """share + int8 puts the tables on an int8 grid and names them in metadata["int8_codebooks"]; on a VNNI
    CPU the runtime runs them on the int8-table LUT kernel, within 1 point of fp32."""
    m, x, y, acc = fashion
    c = compress(m, share=16, share_mode="per_channel", quant="int8")
    names = c.metadata["int8_codebooks"].split("\n")
    assert set(names) == {"conv2d/kernel", "conv2d_1/kernel", "dense/kernel", "dense_1/kernel"}
    kernels = [k for _, _, k in slimrt.Session(c).kernels()]
    if "avx512vnni" in slimrt.cpu_info()["supported_isas"]:
        assert sum("codebookq8_4" in k for k in kernels) == 4, kernels
    assert accuracy(c, x, y) >= acc - 0.01
    plain = compress(m, share=16, share_mode="per_channel")
    assert "int8_codebooks" not in plain.metadata
    assert not any("q8" in k for _, _, k in slimrt.Session(plain).kernels())

"""Slimmable models (python/slimrt/slimmable.py): channel ranking and reordering, per-width nodes
over prefix slices, switchable BN, compressed weights, the PyTorch slimmable importer.

Oracle: the numpy float64 reference executor (``run_reference``), on the original model, on the
multi-width model and on ``extract_width`` models; and hand-written numpy for the reordered weights.
"""
import json
import math

import numpy as np
import pytest

from slimrt.compress import compress, decode
from slimrt.formats import CSR, Codebook, Dense
from slimrt.ir import Model
from slimrt.reference import conv2d as ref_conv2d
from slimrt.slimmable import (channel_spaces, extract_width, gather, model_cost, slim, width_outputs,
                              width_suffix, widths_of)

WIDTHS = (1.0, 0.75, 0.5, 0.25)
RTOL = 1e-5  # float64 reference on permuted weights: only the summation order differs


# ------------------------------------------------------------------ model builders
class B:
    def __init__(self, seed=0, shape=(None, 9, 9, 3)):
        self.rng = np.random.default_rng(seed)
        self.m = Model()
        self.x = self.m.add_input("x", shape)

    def w(self, *shape, scale=0.3):
        return self.rng.standard_normal(shape).astype(np.float32) * scale

    def conv(self, x, cin, cout, k=3, bn=True, act="relu", groups=1, bias=False, name="conv"):
        m = self.m
        cg = cin // groups
        ins = [x, m.add_constant(name + "/w", self.w(cout, k, k, cg))]
        if bias:
            ins.append(m.add_constant(name + "/b", self.w(cout)))
        y = m.add_node("conv2d", ins, {"pads": [k // 2] * 4, "groups": groups}, name=name)
        if bn:
            ps = [m.add_constant(name + "/gamma", 1 + self.w(cout)), m.add_constant(name + "/beta", self.w(cout)),
                  m.add_constant(name + "/mean", self.w(cout)),
                  m.add_constant(name + "/var", (0.5 + self.rng.random(cout)).astype(np.float32))]
            y = m.add_node("batch_norm", [y] + ps, {"epsilon": 1e-3}, name=name + "_bn")
        if act != "none":
            y = m.add_node("activation", [y], {"act": act}, name=name + "_act")
        return y

    def dense(self, x, k, n, act="none", name="fc"):
        m = self.m
        ins = [x, m.add_constant(name + "/w", self.w(n, k)), m.add_constant(name + "/b", self.w(n))]
        return m.add_node("dense", ins, {"act": act}, name=name)

    def head(self, y, c, classes=10):
        g = self.m.add_node("global_avg_pool", [y], name="gap")
        out = self.dense(g, c, classes, name="logits")
        self.m.outputs = [out]
        return self.m


def plain_cnn(seed=0):
    b = B(seed)
    y = b.conv(b.x, 3, 8, name="c1")
    y = b.conv(y, 8, 13, name="c2")  # 13: ceil(0.75 * 13) = 10, ceil(0.25 * 13) = 4
    return b.head(y, 13)


def residual_cnn(seed=1):
    b = B(seed)
    a = b.conv(b.x, 3, 8, name="stem")
    r = b.conv(a, 8, 6, name="r1")
    r = b.conv(r, 6, 8, act="none", name="r2")
    y = b.m.add_node("add", [a, r], name="res")
    y = b.m.add_node("activation", [y], {"act": "relu"}, name="res_act")
    y = b.conv(y, 8, 10, name="c3")
    return b.head(y, 10)


def depthwise_cnn(seed=2):
    b = B(seed)
    y = b.conv(b.x, 3, 8, name="c1")
    y = b.conv(y, 8, 8, groups=8, bias=True, name="dw")
    y = b.conv(y, 8, 12, k=1, name="pw")
    return b.head(y, 12)


def concat_cnn(seed=3):
    b = B(seed)
    p = b.conv(b.x, 3, 6, name="a")
    q = b.conv(b.x, 3, 4, k=1, name="b")
    y = b.m.add_node("concat", [p, q], {"axis": -1}, name="cat")
    y = b.conv(y, 10, 8, name="c")
    return b.head(y, 8)


def flatten_cnn(seed=4):
    b = B(seed, shape=(None, 6, 6, 2))
    y = b.conv(b.x, 2, 8, name="c1")
    y = b.m.add_node("max_pool", [y], {"kernel": [2, 2], "strides": [2, 2]}, name="pool")
    y = b.m.add_node("flatten", [y], {"axis": 1}, name="flat")
    y = b.dense(y, 3 * 3 * 8, 16, act="relu", name="fc1")
    b.m.outputs = [b.dense(y, 16, 5, name="fc2")]
    return b.m


MODELS = {"plain": plain_cnn, "residual": residual_cnn, "depthwise": depthwise_cnn, "concat": concat_cnn,
          "flatten": flatten_cnn}


def feeds(model, n=3, seed=7):
    shape = tuple(n if d is None else d for d in model.inputs[0].shape)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def close(a, b, rtol=RTOL):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


# ------------------------------------------------------------------ structure and exactness
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("criterion", ["l1", "bn"])
def test_full_width_reproduces_the_original(name, criterion):
    model = MODELS[name]()
    sm = slim(model, WIDTHS, criterion=criterion)
    x = feeds(model)
    want = model.run_reference(x)[0]
    outs = sm.run_reference(x)
    assert sm.outputs == [o for e in widths_of(sm) for o in e["outputs"]]
    assert [e["width"] for e in widths_of(sm)] == list(WIDTHS)
    assert width_outputs(sm, 1.0) == [model.outputs[0] + "@w100"]
    close(outs[0], want)
    close(extract_width(sm, 1.0).run_reference(x)[0], want)
    # reordering is a permutation: the full width holds exactly the original weights, reordered
    for k, t in model.constants.items():
        a, b = np.sort(t.to_dense().ravel()), np.sort(sm.constants[k].to_dense().ravel())
        np.testing.assert_array_equal(a, b)
    assert model.outputs == [model.outputs[0]]  # input model untouched


@pytest.mark.parametrize("name", list(MODELS))
def test_every_width_runs_and_matches_its_extracted_model(name):
    model = MODELS[name]()
    sm = slim(model, WIDTHS)
    x = feeds(model, n=2)
    outs = dict(zip(sm.outputs, sm.run_reference(x)))
    prev = None
    for e in widths_of(sm):
        plain = extract_width(sm, e["width"])
        assert plain.outputs == model.outputs and "widths" not in plain.metadata
        got = plain.run_reference(x)[0]
        assert got.shape == (2, outs[e["outputs"][0]].shape[1])
        close(got, outs[e["outputs"][0]], rtol=1e-6)
        cost = model_cost(plain)
        assert (e["macs"], e["bytes"]) == (cost["macs"], cost["bytes"])
        if prev is not None:
            assert e["macs"] < prev["macs"] and e["bytes"] < prev["bytes"]
        prev = e
    assert widths_of(sm)[0]["macs"] == model_cost(model)["macs"]


def test_narrow_width_equals_numpy_on_reordered_prefixes():
    model = plain_cnn()
    sm = slim(model, WIDTHS)
    x = feeds(model, n=2).astype(np.float64)
    C = {k: t.to_dense().astype(np.float64) for k, t in sm.constants.items()}

    def bn(y, p, k):
        return (y - C[p + "/mean"][:k]) / np.sqrt(C[p + "/var"][:k] + 1e-3) * C[p + "/gamma"][:k] + C[p + "/beta"][:k]

    for w in WIDTHS:
        k1, k2 = math.ceil(w * 8), math.ceil(w * 13)
        y = np.maximum(bn(ref_conv2d(x, C["c1/w"][:k1], None, [1, 1], [1, 1], [1] * 4, 1), "c1", k1), 0)
        y = np.maximum(bn(ref_conv2d(y, C["c2/w"][:k2, :, :, :k1], None, [1, 1], [1, 1], [1] * 4, 1), "c2", k2), 0)
        want = y.mean(axis=(1, 2)) @ C["logits/w"][:, :k2].T + C["logits/b"]
        close(extract_width(sm, w).run_reference(x.astype(np.float32))[0], want)


def test_channels_ranked_by_l1_and_by_bn_gamma():
    model = plain_cnn()
    sm = slim(model, WIDTHS, criterion="l1")
    w = sm.constants["c1/w"].to_dense()
    l1 = np.abs(w).reshape(8, -1).sum(axis=1)
    assert np.all(np.diff(l1) <= 0)  # most important first
    orig = np.abs(model.constants["c1/w"].to_dense()).reshape(8, -1).sum(axis=1)
    perm = np.argsort(-orig, kind="stable")
    np.testing.assert_array_equal(sm.constants["c1/gamma"].to_dense(), model.constants["c1/gamma"].to_dense()[perm])
    np.testing.assert_array_equal(sm.constants["c2/w"].to_dense(), model.constants["c2/w"].to_dense()[
        np.argsort(-np.abs(model.constants["c2/w"].to_dense()).reshape(13, -1).sum(1), kind="stable")][..., perm])
    sb = slim(model, WIDTHS, criterion="bn")
    g = np.abs(sb.constants["c1/gamma"].to_dense())
    assert np.all(np.diff(g) <= 0)


@pytest.mark.parametrize("w", WIDTHS)
def test_residual_branches_share_order_and_width(w):
    model = residual_cnn()
    spaces = channel_spaces(model)
    joint = [s for s in spaces if set(s["layers"]) == {"stem", "r2"}]
    assert len(joint) == 1 and joint[0]["channels"] == 8  # the add ties stem and r2
    sm = slim(model, WIDTHS)
    # joint ranking: the same permutation on both producers (gamma order follows the weights)
    l1 = lambda k: np.abs(model.constants[k].to_dense()).reshape(8, -1).sum(axis=1)  # noqa: E731
    perm = np.argsort(-(l1("stem/w") / l1("stem/w").mean() + l1("r2/w") / l1("r2/w").mean()), kind="stable")
    for k in ("stem/w", "stem/gamma", "r2/gamma", "r2/beta", "stem/mean"):
        np.testing.assert_array_equal(sm.constants[k].to_dense(), model.constants[k].to_dense()[perm])
    # r2/w: rows follow the joint order (its input channels follow r1's own order)
    np.testing.assert_allclose(np.abs(sm.constants["r2/w"].to_dense()).reshape(8, -1).sum(1), l1("r2/w")[perm],
                               rtol=1e-6)
    plain = extract_width(sm, w)
    k = math.ceil(w * 8)
    shapes = {kk: t.shape for kk, t in plain.constants.items()}
    sfx = "" if w == 1.0 else width_suffix(w)
    assert shapes["stem/w" + sfx][0] == k and shapes["r2/w" + sfx][0] == k and shapes["c3/w" + sfx][3] == k
    close(plain.run_reference(feeds(model))[0], dict(zip(sm.outputs, sm.run_reference(feeds(model))))[
        width_outputs(sm, w)[0]])


def test_depthwise_follows_its_input_channels():
    model = depthwise_cnn()
    spaces = channel_spaces(model)
    assert sorted(s["channels"] for s in spaces) == [8, 12]
    sm = slim(model, WIDTHS)
    perm = np.argsort(-np.abs(model.constants["c1/w"].to_dense()).reshape(8, -1).sum(1), kind="stable")
    for k in ("dw/w", "dw/b", "dw/gamma", "dw/mean"):
        np.testing.assert_array_equal(sm.constants[k].to_dense(), model.constants[k].to_dense()[perm])
    plain = extract_width(sm, 0.5)
    dw = next(n for n in plain.nodes if n.op == "conv2d" and n.attr("groups") > 1)
    assert dw.attr("groups") == 4  # one group per kept channel
    assert plain.constants[dw.inputs[1]].shape == (4, 3, 3, 1)
    x = feeds(model)
    close(plain.run_reference(x)[0], dict(zip(sm.outputs, sm.run_reference(x)))[width_outputs(sm, 0.5)[0]])
    # c1's first 4 channels do not depend on the width, so neither do dw's: the width's depthwise
    # output is exactly the first 4 channels of the full width's
    probe, full = plain.copy(), extract_width(sm, 1.0)
    probe.outputs, full.outputs = [dw.outputs[0]], ["dw"]
    close(probe.run_reference(x)[0], full.run_reference(x)[0][..., :4], rtol=1e-6)


def test_concat_keeps_one_prefix_per_part():
    model = concat_cnn()
    sm = slim(model, WIDTHS)
    for w in WIDTHS[1:]:
        ka, kb = math.ceil(w * 6), math.ceil(w * 4)
        plain = extract_width(sm, w)
        cw = plain.constants["c/w" + width_suffix(w)].to_dense()
        full = sm.constants["c/w"].to_dense()
        kc = math.ceil(w * 8)
        want = np.concatenate([full[:kc, :, :, :ka], full[:kc, :, :, 6:6 + kb]], axis=3)
        np.testing.assert_array_equal(cw, want)
        close(plain.run_reference(feeds(model))[0],
              dict(zip(sm.outputs, sm.run_reference(feeds(model))))[width_outputs(sm, w)[0]])
    # the multi-width graph expresses it as a concat of two slices of the one constant
    cat = [n for n in sm.nodes if n.op == "concat" and n.inputs[0].startswith("c/w")]
    assert len(cat) == 3


def test_flatten_before_dense_slices_channels_innermost():
    model = flatten_cnn()
    sm = slim(model, WIDTHS)
    full = sm.constants["fc1/w"].to_dense().reshape(16, 9, 8)
    for w in WIDTHS[1:]:
        k, n = math.ceil(w * 8), math.ceil(w * 16)
        got = extract_width(sm, w).constants["fc1/w" + width_suffix(w)].to_dense()
        np.testing.assert_array_equal(got, full[:n, :, :k].reshape(n, 9 * k))
    close(sm.run_reference(feeds(model))[0], model.run_reference(feeds(model))[0])


def test_fixed_layers_keep_full_width():
    b = B(5)
    y = b.conv(b.x, 3, 8, name="c1")
    y = b.conv(y, 8, 8, groups=2, name="grouped")  # grouped, not depthwise: fixed in and out
    y = b.conv(y, 8, 6, name="c3")
    model = b.head(y, 6)
    sm = slim(model, WIDTHS)
    plain = extract_width(sm, 0.5)
    shapes = {k.split("@")[0]: t.shape for k, t in plain.constants.items()}
    assert shapes["c1/w"][0] == 8 and shapes["grouped/w"] == (8, 3, 3, 4) and shapes["c3/w"][0] == 3
    assert shapes["logits/w"] == (10, 3)  # the model's outputs never shrink
    close(sm.run_reference(feeds(model))[0], model.run_reference(feeds(model))[0])


def test_bn_recalibration_sets_per_width_statistics():
    model = plain_cnn()
    calib = feeds(model, n=40, seed=11)
    sm0 = slim(model, WIDTHS)
    sm = slim(model, WIDTHS, calib=calib)
    close(sm.run_reference(feeds(model))[0], model.run_reference(feeds(model))[0])  # full width untouched
    for w in WIDTHS[1:]:
        plain, plain0 = extract_width(sm, w), extract_width(sm0, w)
        sfx = width_suffix(w)
        for bn in ("c1_bn", "c2_bn"):
            node = next(n for n in plain.nodes if n.name == bn + sfx)
            node0 = next(n for n in plain0.nodes if n.name == bn + sfx)
            mean, var = (plain.constants[i].to_dense() for i in node.inputs[3:5])
            mean0 = plain0.constants[node0.inputs[3]].to_dense()
            assert not np.allclose(mean, mean0)  # recalibrated, not the sliced full-width stats
            # the stored statistics are those of the BN's input over the calibration set
            probe = plain.copy()
            probe.outputs = [node.inputs[0]]
            pre = probe.run_reference(calib)[0].astype(np.float64).reshape(-1, mean.size)
            np.testing.assert_allclose(mean, pre.mean(axis=0), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(var, pre.var(axis=0), rtol=1e-4, atol=1e-5)
    # per-width BN constants are small and the width's own; the big weights are still shared slices
    own = [k for k in sm.constants if k.endswith("/mean") and "@w" in k]
    assert len(own) == 6
    assert not any(k.startswith("c2/w@") for k in sm.constants)


def test_accuracy_reported_per_width():
    model = plain_cnn()
    x = feeds(model, n=30, seed=3)
    y = np.argmax(model.run_reference(x)[0], axis=1)
    sm = slim(model, WIDTHS, eval_data=(x, y))
    acc = [e["accuracy"] for e in widths_of(sm)]
    assert acc[0] == 1.0 and all(0.0 <= a <= 1.0 for a in acc)
    assert widths_of(slim(model, WIDTHS))[0]["accuracy"] is None


# ------------------------------------------------------------------ compressed weights
def test_codebook_compressed_model():
    model = plain_cnn()
    comp = compress(model, share=16, share_mode="per_channel")
    assert any(isinstance(t, Codebook) for t in comp.constants.values())
    sm = slim(comp, WIDTHS)
    x = feeds(model)
    close(sm.run_reference(x)[0], comp.run_reference(x)[0])
    for w in WIDTHS[1:]:
        plain = extract_width(sm, w)
        cbs = {k: t for k, t in plain.constants.items() if isinstance(t, Codebook)}
        assert cbs, "the width's weights stay codebook-compressed"
        for k, t in cbs.items():
            base = sm.constants[k.split("@")[0]]
            assert t.bits == base.bits and t.lut.shape[1] == base.lut.shape[1]
            assert t.nbytes < base.nbytes
        close(plain.run_reference(x)[0], dict(zip(sm.outputs, sm.run_reference(x)))[width_outputs(sm, w)[0]],
              rtol=1e-6)


def test_csr_compressed_model():
    model = flatten_cnn()
    comp = compress(model, prune=0.5, quant="int8")
    csrs = [k for k, t in comp.constants.items() if isinstance(t, CSR)]
    assert csrs
    sm = slim(comp, WIDTHS)
    x = feeds(model)
    want = decode(comp).run_reference(x)[0]
    outs = dict(zip(sm.outputs, decode(sm).run_reference(x)))
    close(outs[width_outputs(sm, 1.0)[0]], want)
    for w in WIDTHS[1:]:
        plain = extract_width(sm, w)
        for k, t in plain.constants.items():
            if k.split("@")[0] in csrs and "@" in k:
                assert isinstance(t, CSR), k
                assert t.nnz < sm.constants[k.split("@")[0]].nnz
        close(decode(plain).run_reference(x)[0], outs[width_outputs(sm, w)[0]], rtol=1e-6)


@pytest.mark.parametrize("fmt", ["dense", "int8", "log2", "codebook", "csr", "csr_codebook"])
def test_gather_keeps_the_format(fmt):
    rng = np.random.default_rng(9)
    d = rng.standard_normal((6, 3, 3, 5)).astype(np.float32)
    d[rng.random(d.shape) < 0.4] = 0
    d2 = d.reshape(6, -1)
    if fmt == "dense":
        t, view = Dense(d), d.shape
    elif fmt in ("int8", "log2", "codebook"):
        c = compress(_one_conv(d), quant="int8" if fmt == "int8" else ("log2" if fmt == "log2" else None),
                     share=8 if fmt == "codebook" else None, optimize=False)
        t, view = c.constants["w"], d.shape
    else:
        c = compress(_one_conv(d), prune=0.3, share=8 if fmt == "csr_codebook" else None, optimize=False)
        t, view = c.constants["w"], (6, 9, 5)
    dense = t.to_dense().reshape(view)
    idx = [np.array([4, 0, 2]), None, np.array([3, 1])] if len(view) == 3 else \
          [np.array([4, 0, 2]), None, np.array([2, 0]), np.array([3, 1])]
    out_shape = (3, 9 * 2) if len(view) == 3 else None
    g = gather(t, view, idx, out_shape)
    assert type(g) is type(t)
    want = dense[np.ix_(*[np.arange(s) if i is None else i for s, i in zip(view, idx)])]
    np.testing.assert_array_equal(g.to_dense(), want.reshape(g.shape))


def _one_conv(w):
    m = Model()
    x = m.add_input("x", (None, 5, 5, w.shape[3]))
    m.constants["w"] = Dense(w)
    m.outputs = [m.add_node("conv2d", [x, "w"], {"pads": [1] * 4}, name="conv")]
    return m


# ------------------------------------------------------------------ arguments and the optimizer
def test_width_rules_and_errors():
    model = plain_cnn()
    sm = slim(model, (0.5, 1.0, 0.3))
    assert [e["width"] for e in widths_of(sm)] == [1.0, 0.5, 0.3]
    assert width_outputs(sm, 0.3) == ["logits@w30"]
    assert extract_width(sm, 0.3).constants["c1/w@w30"].shape[0] == math.ceil(0.3 * 8)
    assert extract_width(slim(model, (1.0, 0.01)), 0.01).constants["c1/w@w1"].shape[0] == 1  # at least 1
    assert width_suffix(0.125) == "@w12.5"
    from slimrt.errors import InputError, UnsupportedError

    for bad in [(), (0.0,), (1.5,), (-0.5, 1.0)]:
        with pytest.raises(InputError):
            slim(model, bad)
    with pytest.raises(InputError):
        slim(model, criterion="magic")
    with pytest.raises(InputError):
        slim(sm)
    with pytest.raises(InputError):
        extract_width(sm, 0.75)
    with pytest.raises(InputError):
        extract_width(model, 1.0)
    m = Model()
    x = m.add_input("x", (None, 4))
    m.outputs = [m.add_node("dense", [x, m.add_constant("w", np.ones((3, 4), np.float32))], name="d")]
    with pytest.raises(UnsupportedError):
        slim(m)


def test_widths_without_full_width():
    model = plain_cnn()
    sm = slim(model, (0.75, 0.5))
    assert sm.outputs == ["logits@w75", "logits@w50"]
    x = feeds(model)
    for e in widths_of(sm):
        close(extract_width(sm, e["width"]).run_reference(x)[0],
              dict(zip(sm.outputs, sm.run_reference(x)))[e["outputs"][0]], rtol=1e-6)


def test_metadata_is_json():
    sm = slim(plain_cnn(), WIDTHS)
    meta = json.loads(sm.metadata["widths"])
    assert set(meta[0]) == {"width", "outputs", "macs", "bytes", "accuracy"}


def test_optimize_keeps_every_width():
    model = plain_cnn()
    sm = slim(model, WIDTHS, calib=feeds(model, n=20))
    x = feeds(model)
    want = sm.run_reference(x)
    opt = sm.optimize()
    got = dict(zip(opt.outputs, opt.run_reference(x)))
    for o, v in zip(sm.outputs, want):
        close(got[o], v, rtol=1e-4)
    assert any(n.op == "slice" and n.inputs[0] in opt.constants for n in opt.nodes)


# ------------------------------------------------------------------ the bundled trained model
def test_fashion_cnn_widths():
    import os

    import slimrt

    here = os.path.join(os.path.dirname(slimrt.__file__), "data")
    model = slimrt.from_keras(os.path.join(here, "fashion_cnn.keras"))
    test = np.load(os.path.join(here, "fashion_test500.npz"))
    calib = np.load(os.path.join(here, "fashion_calib1000.npz"))["x"][:128].astype(np.float32)[..., None]
    x, y = test["x"][:150].astype(np.float32)[..., None], test["y"][:150]
    sm = slim(model, WIDTHS, calib=calib, eval_data=(x, y))
    meta = widths_of(sm)
    base = float(np.mean(np.argmax(model.run_reference(x)[0], 1) == y))
    assert meta[0]["accuracy"] == pytest.approx(base)
    assert meta[1]["accuracy"] > 0.5  # a trained net at 3/4 width stays useful after BN recalibration
    assert [e["macs"] for e in meta] == sorted((e["macs"] for e in meta), reverse=True)
    assert meta[-1]["macs"] < meta[0]["macs"] / 8


# ------------------------------------------------------------------ PyTorch slimmable networks
def _torch_slimmable(prefix=True, seed=0):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self, w):
            super().__init__()
            c1, c2 = math.ceil(8 * w), math.ceil(12 * w)
            self.c1, self.b1 = nn.Conv2d(3, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1)
            self.c2, self.b2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2)
            self.fc = nn.Linear(c2, 10)

        def forward(self, x):
            x = torch.relu(self.b1(self.c1(x)))
            x = torch.relu(self.b2(self.c2(x)))
            return self.fc(x.mean(dim=(2, 3)))

    torch.manual_seed(seed)
    full = Net(1.0)
    for b in (full.b1, full.b2):
        b.running_mean.uniform_(-0.5, 0.5)
        b.running_var.uniform_(0.5, 1.5)
        b.weight.data.uniform_(0.5, 1.5)

    def factory(w):
        net = Net(w).eval()
        sd = net.state_dict()
        for k, v in full.state_dict().items():
            if v.ndim == 0:
                continue
            part = v[tuple(slice(0, s) for s in sd[k].shape)]
            if "running" in k and w != 1.0:  # switchable BN: the width's own statistics
                part = part * (1.0 + w) if "var" in k else part + w
            if not prefix and k == "c2.weight" and w != 1.0:
                part = torch.randn_like(part)
            sd[k] = part.clone()
        net.load_state_dict(sd)
        return net

    return torch, factory


def test_from_torch_slimmable_merges_prefix_widths():
    from slimrt.slimmable import from_torch_slimmable

    torch, factory = _torch_slimmable()
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 7)).astype(np.float32)
    sm = from_torch_slimmable(factory, WIDTHS, torch.from_numpy(x))
    outs = dict(zip(sm.outputs, sm.run_reference(x)))
    for w in WIDTHS:
        with torch.no_grad():
            want = factory(w)(torch.from_numpy(x)).numpy()
        close(outs[width_outputs(sm, w)[0]], want, rtol=1e-4)
        close(extract_width(sm, w).run_reference(x)[0], want, rtol=1e-4)
    # weights are stored once: narrower widths read slices of the full-width constants
    big = [k for k, t in sm.constants.items() if t.size >= 8 * 9 * 3]
    assert all("@w" not in k for k in big)
    macs = [e["macs"] for e in widths_of(sm)]
    assert macs == sorted(macs, reverse=True) and macs[-1] < macs[0]


def test_from_torch_slimmable_refuses_non_prefix_weights():
    from slimrt.errors import InputError
    from slimrt.slimmable import from_torch_slimmable

    torch, factory = _torch_slimmable(prefix=False)
    x = torch.zeros(2, 3, 7, 7)
    with pytest.raises(InputError, match="not a prefix"):
        from_torch_slimmable(factory, WIDTHS, x)

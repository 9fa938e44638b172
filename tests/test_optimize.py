"""Each optimizer pass fires on its pattern and keeps the outputs (reference executor, then the runtime)."""
import numpy as np
import pytest

import slimrt
from slimrt import Model
from slimrt.formats import Codebook, QInt8
from slimrt.optimize import PASSES, optimize


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def bn(m, rng, x, c):
    return m.add_node("batch_norm", [x, m.add_constant("g", rnd(rng, c) + 1.0), m.add_constant("b", rnd(rng, c)),
                                     m.add_constant("mu", rnd(rng, c)), m.add_constant("var", np.abs(rnd(rng, c)) + .3)])


def same_outputs(m1, m2, feeds, tol=1e-5, run_tol=1e-4):
    a, b = m1.run_reference(feeds), m2.run_reference(feeds)
    for x, y in zip(a, b):
        assert np.abs(x - y).max() <= tol * max(1.0, np.abs(x).max())
    got = slimrt.Session(m2).run(feeds)
    for x, y in zip(a, got):
        assert np.abs(x - y).max() <= run_tol * max(1.0, np.abs(x).max())


def ops(m):
    return [n.op for n in m.nodes]


def test_fold_bn_into_conv_and_fuse_relu(rng):
    m = Model(inputs=[("x", (None, 8, 8, 3))])
    y = m.add_node("conv2d", ["x", m.add_constant("w", rnd(rng, 6, 3, 3, 3))], dict(pads=[1, 1, 1, 1]))
    y = m.add_node("activation", [bn(m, rng, y, 6)], dict(act="relu"))
    m.outputs = [y]
    o = optimize(m)
    assert ops(o) == ["conv2d"] and o.nodes[0].attrs["act"] == "relu" and o.outputs == m.outputs
    same_outputs(m, o, rnd(rng, 2, 8, 8, 3))


@pytest.mark.parametrize("fmt", ["int8", "codebook"])
def test_fold_bn_keeps_compressed_formats(rng, fmt):
    m = Model(inputs=[("x", (None, 10))])
    w = rnd(rng, 4, 10)
    if fmt == "int8":
        s = np.abs(w).max(1) / 127
        t = QInt8(np.round(w / s[:, None]).astype(np.int8), s, axis=0)
    else:
        t = Codebook(rng.integers(0, 4, (4, 10)), rnd(rng, 4), bits=2)
    y = m.add_node("dense", ["x", m.add_constant("w", t)])
    m.outputs = [bn(m, rng, y, 4)]
    o = optimize(m)
    assert ops(o) == ["dense"]
    assert type(o.constants[o.nodes[0].inputs[1]]) is type(t)
    if fmt == "codebook":  # weight sharing survives: same indices, per-channel tables
        assert np.array_equal(o.constants["w"].indices, t.indices)
    # int8 weights run the int8 kernel, whose activations are quantized at run time
    same_outputs(m, o, rnd(rng, 3, 10), run_tol=2e-2 if fmt == "int8" else 1e-4)


def test_fold_bn_forward_into_dense(rng):
    m = Model(inputs=[("x", (None, 6))])
    y = m.add_node("activation", ["x"], dict(act="relu"))
    y = bn(m, rng, y, 6)
    m.outputs = [m.add_node("dense", [y, m.add_constant("w", rnd(rng, 3, 6))])]
    o = optimize(m)
    assert "batch_norm" not in ops(o)
    same_outputs(m, o, rnd(rng, 4, 6))


def test_padded_conv_keeps_forward_bn(rng):
    m = Model(inputs=[("x", (None, 5, 5, 2))])
    y = bn(m, rng, m.add_node("activation", ["x"], dict(act="relu")), 2)
    m.outputs = [m.add_node("conv2d", [y, m.add_constant("w", rnd(rng, 3, 3, 3, 2))], dict(pads=[1, 1, 1, 1]))]
    o = optimize(m)
    assert "batch_norm" in ops(o)  # folding would be wrong at the zero-padded border
    same_outputs(m, o, rnd(rng, 2, 5, 5, 2))


def test_transposes_pad_scale_constants(rng):
    m = Model(inputs=[("x", (None, 6, 6, 2))])
    y = m.add_node("transpose", ["x"], dict(perm=[0, 3, 1, 2]))
    y = m.add_node("transpose", [y], dict(perm=[0, 2, 3, 1]))
    y = m.add_node("mul", [y, m.add_constant("k", np.float32([1 / 255.0]))])
    y = m.add_node("pad", [y], dict(pads=[0, 1, 2, 0, 0, 1, 0, 0]))
    y = m.add_node("conv2d", [y, m.add_constant("w", rnd(rng, 4, 3, 3, 2))])
    c1 = m.add_constant("c1", rnd(rng, 4))
    c2 = m.add_node("mul", [c1, m.add_constant("c2", np.float32([2.0]))])
    y = m.add_node("add", [y, c2])
    m.outputs = [y]
    o = optimize(m)
    assert ops(o) == ["conv2d", "add"]
    assert o.nodes[0].attrs["pads"] == [1, 2, 1, 0]
    same_outputs(m, o, rnd(rng, 2, 6, 6, 2) * 255)


def test_transpose_flatten_dense_head(rng):
    """A PyTorch head (NHWC -> NCHW -> flatten -> linear) reads NHWC directly after the pass."""
    m = Model(inputs=[("x", (None, 3, 4, 5))])
    y = m.add_node("transpose", ["x"], dict(perm=[0, 3, 1, 2]))
    y = m.add_node("flatten", [y])
    m.outputs = [m.add_node("dense", [y, m.add_constant("w", rnd(rng, 7, 60))])]
    o = optimize(m)
    assert ops(o) == ["flatten", "dense"]
    same_outputs(m, o, rnd(rng, 2, 3, 4, 5))


def _seq_first_block(m, rng, x, e=8):
    """x [B, S, E] -> T -> add(T(x), T(dense(x))) -> layer_norm -> dense/relu/dense + residual -> T back:
    the transposes a batch-first torch encoder layer leaves once its attention is fused."""
    t = m.add_node("transpose", [x], dict(perm=[1, 0, 2]))
    d = m.add_node("dense", [x, m.add_constant("wa", rnd(rng, e, e))])
    y = m.add_node("add", [t, m.add_node("transpose", [d], dict(perm=[1, 0, 2]))])
    y = m.add_node("layer_norm", [y, m.add_constant("g", rnd(rng, e) + 1), m.add_constant("b", rnd(rng, e))])
    h = m.add_node("dense", [y, m.add_constant("w1", rnd(rng, 2 * e, e))], dict(act="relu"))
    h = m.add_node("dense", [h, m.add_constant("w2", rnd(rng, e, 2 * e))])
    y = m.add_node("add", [h, y])
    y = m.add_node("add", [y, m.add_constant("c", rnd(rng, e))])
    return m.add_node("transpose", [y], dict(perm=[1, 0, 2]))


def test_sink_transposes_through_an_encoder_layer(rng):
    """Transposes that keep the last axis sink through last-axis ops (dense, layer_norm, activation),
    through elementwise ops whose operands are both transposed (or a rank-1 constant), around a residual
    branch, and cancel with the one at the end; the output keeps its name."""
    m = Model(inputs=[("x", (None, None, 8))])
    m.outputs = [_seq_first_block(m, rng, "x")]
    o = optimize(m)
    assert "transpose" not in ops(o) and o.outputs == m.outputs
    same_outputs(m, o, rnd(rng, 3, 5, 8))
    assert "transpose" in ops(optimize(m, disable=["sink_transposes"]))


def test_sink_transposes_copies_one_for_a_reader_it_cancels_with(rng):
    """A transpose read twice: the reader whose last-axis chain ends in the inverse transpose gets its own
    copy (which cancels); the other reader keeps the original."""
    m = Model(inputs=[("x", (None, None, 8))])
    t = m.add_node("transpose", ["x"], dict(perm=[1, 0, 2]))
    a = m.add_node("layer_norm", [t, m.add_constant("g", rnd(rng, 8) + 1), m.add_constant("b", rnd(rng, 8))])
    a = m.add_node("transpose", [a], dict(perm=[1, 0, 2]))
    m.outputs = [a, m.add_node("activation", [t], dict(act="tanh"))]
    o = optimize(m)
    assert ops(o).count("transpose") == 1 and o.outputs == m.outputs
    same_outputs(m, o, rnd(rng, 2, 3, 8))


def test_sink_transposes_leaves_last_axis_moves(rng):
    """A transpose that moves the last axis does not commute with dense / layer_norm: it stays."""
    m = Model(inputs=[("x", (None, 4, 8))])
    t = m.add_node("transpose", ["x"], dict(perm=[0, 2, 1]))
    y = m.add_node("dense", [t, m.add_constant("w", rnd(rng, 4, 4))])
    m.outputs = [m.add_node("transpose", [y], dict(perm=[0, 2, 1]))]
    o = optimize(m)
    assert ops(o) == ["transpose", "dense", "transpose"]
    same_outputs(m, o, rnd(rng, 2, 4, 8))


def test_sink_transposes_keeps_calibrated_activations(rng):
    """The value an op now produces before the moved transpose gets the calibration of the one it
    replaced, so a static int8 model keeps its int8 layers."""
    import json

    m = Model(inputs=[("x", (None, None, 8))])
    t = m.add_node("transpose", ["x"], dict(perm=[1, 0, 2]))
    y = m.add_node("dense", [t, m.add_constant("w", rnd(rng, 8, 8))])
    m.outputs = [m.add_node("transpose", [y], dict(perm=[1, 0, 2]))]
    m.metadata["act_quant"] = json.dumps({"x": [0.1, 128], t: [0.1, 128], y: [0.2, 100]})
    o = optimize(m, only=["remove_identities", "sink_transposes", "cancel_transposes"])
    assert ops(o) == ["dense"]
    q = json.loads(o.metadata["act_quant"])
    assert q[o.nodes[0].outputs[0]] == [0.2, 100]


def test_disable_and_unknown_pass(rng):
    m = Model(inputs=[("x", (None, 4))])
    y = m.add_node("dense", ["x", m.add_constant("w", rnd(rng, 4, 4))])
    m.outputs = [m.add_node("activation", [y], dict(act="relu"))]
    assert ops(optimize(m, disable=["fuse_activation"])) == ["dense", "activation"]
    assert ops(m) == ["dense", "activation"]  # the input model is untouched
    with pytest.raises(slimrt.InputError, match="unknown optimizer pass"):
        optimize(m, disable=["nope"])
    assert set(PASSES) >= {"fold_batch_norm", "fuse_activation", "constant_fold", "dead_code"}


@pytest.mark.parametrize("dw", [False, True])
def test_fuse_residual_add_and_relu(rng, dw):
    """A ResNet block: conv -> BN -> (+ shortcut) -> relu becomes one conv with residual and act in its epilogue."""
    m = Model(inputs=[("x", (None, 6, 6, 8))])
    y = m.add_node("conv2d", ["x", m.add_constant("w1", rnd(rng, 8, 3, 3, 8, scale=0.3))],
                   dict(pads=[1, 1, 1, 1], act="relu"))
    w2 = rnd(rng, 8, 3, 3, 1, scale=0.3) if dw else rnd(rng, 8, 3, 3, 8, scale=0.3)
    y = m.add_node("conv2d", [y, m.add_constant("w2", w2)], dict(pads=[1, 1, 1, 1], groups=8 if dw else 1))
    y = bn(m, rng, y, 8)
    y = m.add_node("add", ["x", y])
    m.outputs = [m.add_node("activation", [y], dict(act="relu"))]
    o = optimize(m)
    assert ops(o) == ["conv2d", "conv2d"]
    last = o.nodes[-1]
    assert last.attrs["residual"] == 1 and last.attrs["act"] == "relu" and last.inputs[-1] == "x"
    same_outputs(m, o, rnd(rng, 3, 6, 6, 8))
    # dense too
    d = Model(inputs=[("x", (None, 5))])
    h = d.add_node("dense", ["x", d.add_constant("w", rnd(rng, 5, 5)), d.add_constant("b", rnd(rng, 5))])
    d.outputs = [d.add_node("add", [h, "x"])]
    od = optimize(d)
    assert ops(od) == ["dense"] and od.nodes[0].attrs["residual"] == 1
    same_outputs(d, od, rnd(rng, 4, 5))

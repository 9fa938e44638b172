"""Whole graphs through the C++ runtime against the numpy reference executor, on every ISA."""
import threading

import numpy as np
import pytest

import slimrt
from slimrt import Model
from conftest import supported_isas

ISAS = supported_isas()
RTOL = 1e-4  # relative to the output's max magnitude (float32 kernels vs float64 reference)


def close(got, want, tol=RTOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    scale = max(np.abs(want).max(), 1e-6)
    err = np.abs(got - want).max() / scale
    assert err <= tol, f"max rel. error {err:.3g} > {tol}"


def check(model, feeds, isas=ISAS, tol=RTOL, threads=(1, 2)):
    model.validate()
    want = model.run_reference(feeds)
    for isa in isas:
        for t in threads:
            got = slimrt.Session(model, isa=isa, threads=t).run(feeds)
            assert len(got) == len(want)
            for g, w in zip(got, want):
                close(g, w, tol)


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("hw,c,stride,batch,wino", [
    (8, 16, 1, 1, True),    # 4 output tiles of 4x4
    (4, 16, 1, 1, False),   # one tile: the transformed weights would not be reused
    (4, 16, 1, 2, True),    # ... two images: two tiles
    (8, 4, 1, 2, False),    # < 8 input channels
    (8, 16, 2, 2, False),   # stride 2
])
def test_winograd_default_rule(rng, hw, c, stride, batch, wino):
    """An untuned session runs a dense fp32 3x3 stride-1 convolution with Winograd F(4x4, 3x3) where
    its shape rule expects it to pay (plans are per shape: the same node can take either path); results
    match the float64 reference on every ISA and thread count."""
    m = Model(inputs=[("x", (None, hw, hw, c))])
    y = m.add_node("conv2d", ["x", m.add_constant("w", rnd(rng, 24, 3, 3, c, scale=0.3)),
                              m.add_constant("b", rnd(rng, 24))],
                   dict(pads=[1, 1, 1, 1], strides=[stride, stride], act="relu"))
    m.outputs = [m.add_node("conv2d", [y, m.add_constant("w2", rnd(rng, 8, 3, 3, 24, scale=0.2))],
                            dict(pads=[1, 1, 1, 1]))]
    x = rnd(rng, batch, hw, hw, c)
    check(m, {"x": x})
    for isa in ISAS:
        kernel = dict((n, k) for n, _, k in slimrt.Session(m, isa=isa).kernels(x.shape))[m.nodes[0].name]
        assert kernel.startswith("conv_winograd_") == (wino and isa != "scalar"), (isa, kernel)


def test_mlp(rng):
    m = Model(inputs=[("x", (None, 37))])
    h = m.add_node("dense", ["x", m.add_constant("w1", rnd(rng, 33, 37, scale=0.3)), m.add_constant("b1", rnd(rng, 33))],
                   dict(act="relu"))
    h = m.add_node("dense", [h, m.add_constant("w2", rnd(rng, 10, 33, scale=0.3))])
    m.outputs = [m.add_node("softmax", [h])]
    for batch in (1, 5, 17):
        check(m, rnd(rng, batch, 37))


CONVS = [
    dict(k=3, s=1, d=1, p=[1, 1, 1, 1], g=1),
    dict(k=3, s=2, d=1, p=[0, 0, 1, 1], g=1),
    dict(k=1, s=1, d=1, p=[0, 0, 0, 0], g=1),
    dict(k=3, s=1, d=2, p=[2, 2, 2, 2], g=1),
    dict(k=3, s=1, d=1, p=[1, 1, 1, 1], g=2),
    dict(k=3, s=2, d=1, p=[1, 1, 1, 1], g="dw"),
    dict(k=5, s=1, d=1, p=[2, 1, 2, 1], g="dw"),
]


@pytest.mark.parametrize("cfg", CONVS, ids=lambda c: f"k{c['k']}s{c['s']}d{c['d']}g{c['g']}")
@pytest.mark.parametrize("act", ["none", "relu6", "hard_swish"])
def test_conv2d(rng, cfg, act):
    c = 6
    g = c if cfg["g"] == "dw" else cfg["g"]
    o = 12 if cfg["g"] == "dw" else 10
    m = Model(inputs=[("x", (None, 9, 11, c))])
    w = m.add_constant("w", rnd(rng, o, cfg["k"], cfg["k"], c // g, scale=0.3))
    b = m.add_constant("b", rnd(rng, o))
    m.outputs = [m.add_node("conv2d", ["x", w, b], dict(strides=[cfg["s"]] * 2, dilations=[cfg["d"]] * 2,
                                                         pads=cfg["p"], groups=g, act=act))]
    check(m, rnd(rng, 2, 9, 11, c))


def check_fused(m, x, is_fused):
    """On every ISA, threads 1 and 2: exactly one fused kernel, the one is_fused(name) expects, with
    bitwise equal outputs for both thread counts and the unfused session's (no fused kernel) within 1e-6."""
    for isa in ISAS:
        runs = {}
        for t in (1, 2):
            fs = slimrt.Session(m, isa=isa, threads=t)
            fused = [k for _, _, k in fs.kernels(x.shape) if "+" in k]
            assert len(fused) == 1 and is_fused(fused[0]), fs.kernels(x.shape)
            runs[t] = fs.run(x)[0]
        np.testing.assert_array_equal(runs[1], runs[2])
        unfused = slimrt.Session(m, isa=isa, fuse=False)
        assert not any("+" in k for _, _, k in unfused.kernels(x.shape))
        close(runs[1], unfused.run(x)[0], 1e-6)


@pytest.mark.parametrize("n,hw,c,s", [(3, 6, 24, 1), (1, 64, 64, 1), (3, 90, 64, 2)],
                         ids=["small", "chunked", "chunked-s2"])
def test_depthwise_pointwise_fusion(rng, n, hw, c, s):
    """A depthwise conv whose output only a 1x1 conv reads runs fused with it (one kernel named
    "dwconv_<isa>+<pointwise kernel>"): a small depthwise output as two kernels back to back, one of
    >= 1 MB in chunks of output rows (here straddling images too). Depthwise bias + relu6, pointwise
    bias + residual + relu; the reference's outputs on every ISA, the unfused session's within float
    tolerance, threads 1 and 2 bitwise identical. A depthwise output that a graph output also
    exposes, or that a second node reads, is not fused."""
    o = c
    m = Model(inputs=[("x", (None, hw, hw, c))])
    d = m.add_node("conv2d", ["x", m.add_constant("wd", rnd(rng, c, 3, 3, 1, scale=0.4)), m.add_constant("bd", rnd(rng, c))],
                   dict(strides=[s, s], pads=[1, 1, 1, 1], groups=c, act="relu6"))
    oh = (hw - 1) // s + 1
    r = "x" if s == 1 else m.add_node("max_pool", ["x"], dict(kernel=[1, 1], strides=[s, s]))
    y = m.add_node("conv2d", [d, m.add_constant("wp", rnd(rng, o, 1, 1, c, scale=0.2)), m.add_constant("bp", rnd(rng, o)), r],
                   dict(residual=1, act="relu"))
    m.outputs = [y]
    x = rnd(rng, n, hw, hw, c)
    check(m, x)
    check_fused(m, x, lambda k: k.startswith("dwconv_") and k.count("+") == 1)
    m.outputs = [y, d]  # the depthwise output is a graph output too
    assert not any("+" in k for _, _, k in slimrt.Session(m).kernels(x.shape))
    check(m, x, isas=ISAS[-1:], threads=(2,))
    m.outputs = [m.add_node("add", [y, m.add_node("conv2d", [d, m.add_constant("wq", rnd(rng, o, 1, 1, c))])])]
    assert not any("+" in k for _, _, k in slimrt.Session(m).kernels(x.shape))


@pytest.mark.parametrize("n,hw,c,e,s", [(3, 6, 8, 24, 1), (2, 48, 16, 96, 1), (3, 45, 8, 64, 2), (1, 96, 8, 48, 1)],
                         ids=["small", "chunked", "chunked-s2", "one-image"])  # expansions of 10 KB, 1.7 MB, 1.5 MB, 1.7 MB
def test_expand_depthwise_pointwise_fusion(rng, n, hw, c, e, s):
    """An inverted residual block (1x1 expansion + relu6 -> depthwise 3x3 + relu6 -> 1x1 projection
    + residual) whose intermediate values nothing else reads runs as one op
    ("conv1x1_..+dwconv_..+.."): a small expansion whole, one of >= 1 MB a few rows at a time per
    thread (runs of one image split across threads at batch 1). The reference's outputs on every
    ISA, the unfused session's within float tolerance, threads 1 and 2 bitwise identical. An
    expansion that a graph output or a second node also reads stays a node of its own."""
    m = Model(inputs=[("x", (None, hw, hw, c))])
    a = m.add_node("conv2d", ["x", m.add_constant("we", rnd(rng, e, 1, 1, c, scale=0.3)), m.add_constant("be", rnd(rng, e))],
                   dict(act="relu6"))
    d = m.add_node("conv2d", [a, m.add_constant("wd", rnd(rng, e, 3, 3, 1, scale=0.4)), m.add_constant("bd", rnd(rng, e))],
                   dict(strides=[s, s], pads=[1, 1, 1, 1], groups=e, act="relu6"))
    ins = [d, m.add_constant("wp", rnd(rng, c, 1, 1, e, scale=0.2)), m.add_constant("bp", rnd(rng, c))]
    y = m.add_node("conv2d", ins + ["x"], dict(residual=1)) if s == 1 else m.add_node("conv2d", ins)
    m.outputs = [y]
    x = rnd(rng, n, hw, hw, c)
    check(m, x)
    check_fused(m, x, lambda k: k.count("+") == 2 and "+dwconv_" in k)
    for outs in ([y, a], [m.add_node("add", [y, m.add_node("conv2d", [a, m.add_constant("wq", rnd(rng, c, 1, 1, e))],
                                                               dict(strides=[s, s]))])]):
        m.outputs = outs  # the expansion is a graph output too / a second node reads it
        fused = [k for _, _, k in slimrt.Session(m).kernels(x.shape) if "+" in k]
        assert len(fused) == 1 and fused[0].startswith("dwconv_"), fused
        check(m, x, isas=ISAS[-1:], threads=(2,))


@pytest.mark.parametrize("expand", [False, True], ids=["dw-pw", "expand-dw-pw"])
@pytest.mark.parametrize("n,hw,c,s", [(3, 6, 24, 1), (4, 64, 64, 1), (9, 90, 64, 2), (1, 128, 64, 1)],
                         ids=["small", "chunked", "chunked-s2", "one-image"])  # u8 tensors of 2.6 KB, 1 MiB, 4.7 MB, 1 MiB
def test_int8_depthwise_pointwise_fusion(rng, n, hw, c, s, expand):
    """Static int8: the u8 depthwise conv and the int8 1x1 conv that alone reads it run as one op
    ("q8_dwconv_<isa>+q8_conv1x1_static_<isa>"), and with the 1x1 expansion before the depthwise conv
    when nothing else reads it ("q8_conv1x1_static_<isa>+q8_dwconv_<isa>+..."), whole or in chunks of
    output rows; the same bytes as the unfused session on every ISA, threads 1 and 2."""
    m = Model(inputs=[("x", (None, hw, hw, c))])
    a = m.add_node("conv2d", ["x", m.add_constant("wa", rnd(rng, c, 1, 1, c, scale=0.2))], dict(act="relu"))  # u8 in the int8 graph
    d = m.add_node("conv2d", [a if expand else "x", m.add_constant("wd", rnd(rng, c, 3, 3, 1, scale=0.4)),
                              m.add_constant("bd", rnd(rng, c))], dict(strides=[s, s], pads=[1, 1, 1, 1], groups=c, act="relu6"))
    r = "x" if expand else a  # (an expansion that the residual reads too does not fuse: the block input does)
    r = r if s == 1 else m.add_node("max_pool", [r], dict(kernel=[1, 1], strides=[s, s]))
    m.outputs = [m.add_node("conv2d", [d, m.add_constant("wp", rnd(rng, c, 1, 1, c, scale=0.2)), m.add_constant("bp", rnd(rng, c)),
                                       r], dict(residual=1, act="relu"))]
    q = m.compress(quant="int8", calib=rnd(rng, 4, hw, hw, c), calib_method="minmax").optimize()
    x = rnd(rng, n, hw, hw, c)
    for isa in ISAS:
        want = slimrt.Session(q, isa=isa, fuse=False).run(x)[0]
        for t in (1, 2):
            fs = slimrt.Session(q, isa=isa, threads=t)
            fused = [k for _, _, k in fs.kernels(x.shape) if "+" in k]
            assert len(fused) == 1 and fused[0].startswith("q8_conv1x1" if expand else "q8_dwconv"), fs.kernels(x.shape)
            assert fused[0].count("+") == (2 if expand else 1)
            np.testing.assert_array_equal(fs.run(x)[0], want)


def test_cnn_ops(rng):
    """conv -> BN -> prelu -> pools (ceil mode) -> concat -> pad -> global pool -> flatten -> dense."""
    m = Model(inputs=[("x", (None, 12, 12, 3))])
    y = m.add_node("conv2d", ["x", m.add_constant("w", rnd(rng, 8, 3, 3, 3, scale=0.4))], dict(pads=[1, 1, 1, 1]))
    y = m.add_node("batch_norm", [y, m.add_constant("g", rnd(rng, 8) + 1), m.add_constant("be", rnd(rng, 8)),
                                  m.add_constant("mu", rnd(rng, 8)), m.add_constant("var", np.abs(rnd(rng, 8)) + 0.5)],
                   dict(epsilon=1e-3))
    y = m.add_node("prelu", [y, m.add_constant("slope", rnd(rng, 8, scale=0.2))])
    a = m.add_node("max_pool", [y], dict(kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1))
    b = m.add_node("avg_pool", [y], dict(kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                                         count_include_pad=0))
    y = m.add_node("concat", [a, b], dict(axis=3))
    y = m.add_node("pad", [y], dict(pads=[0, 1, 0, 0, 0, 1, 2, 0], value=0.5))
    g = m.add_node("global_avg_pool", [y])
    gm = m.add_node("global_max_pool", [y])
    y = m.add_node("add", [g, gm])
    y = m.add_node("flatten", [y])
    m.outputs = [m.add_node("dense", [y, m.add_constant("wd", rnd(rng, 5, 16))], dict(act="sigmoid"))]
    check(m, rnd(rng, 3, 12, 12, 3))


@pytest.mark.parametrize("act", list(slimrt.ir.ACTIVATIONS))
def test_activations(rng, act):
    m = Model(inputs=[("x", (None, 7, 19))])
    m.outputs = [m.add_node("activation", ["x"], dict(act=act, alpha=0.2))]
    check(m, rnd(rng, 2, 7, 19, scale=3.0), threads=(1,))


def test_transformer_block_ops(rng):
    """embedding -> layer norm -> q/k matmul -> softmax -> matmul -> transpose/reshape -> gelu -> slice/reduce."""
    s, d, h = 6, 16, 2
    m = Model(inputs=[("ids", (None, s), "int64")])
    x = m.add_node("embedding", ["ids", m.add_constant("tab", rnd(rng, 50, d))])
    x = m.add_node("layer_norm", [x, m.add_constant("ln_g", rnd(rng, d) + 1), m.add_constant("ln_b", rnd(rng, d))])
    q = m.add_node("dense", [x, m.add_constant("wq", rnd(rng, d, d, scale=0.3))])
    k = m.add_node("dense", [x, m.add_constant("wk", rnd(rng, d, d, scale=0.3))])
    q = m.add_node("transpose", [m.add_node("reshape", [q], dict(shape=[0, 0, h, d // h]))], dict(perm=[0, 2, 1, 3]))
    k = m.add_node("transpose", [m.add_node("reshape", [k], dict(shape=[0, 0, h, d // h]))], dict(perm=[0, 2, 1, 3]))
    att = m.add_node("matmul", [q, k], dict(trans_b=1))
    att = m.add_node("mul", [att, m.add_constant("sc", np.float32([0.5]))])
    att = m.add_node("softmax", [att])
    o = m.add_node("matmul", [att, q])
    o = m.add_node("reshape", [m.add_node("transpose", [o], dict(perm=[0, 2, 1, 3]))], dict(shape=[0, 0, d]))
    o = m.add_node("activation", [m.add_node("sub", [o, x])], dict(act="gelu"))
    o = m.add_node("div", [o, m.add_constant("two", np.float32([2.0]))])
    first = m.add_node("slice", [o], dict(axes=[1], starts=[0], ends=[1]))
    mean = m.add_node("reduce_mean", [o], dict(axes=[1]))
    mx = m.add_node("reduce_max", [o], dict(axes=[1], keepdims=1))
    m.outputs = [first, mean, mx, m.add_node("matmul", [o, m.add_constant("wm", rnd(rng, d, 3))])]
    check(m, {"ids": rng.integers(0, 50, (2, s)).astype(np.int64)})


def test_dynamic_batch_and_plan(rng):
    m = Model(inputs=[("x", (None, 16, 16, 8))])
    y = "x"
    for i in range(6):
        y = m.add_node("conv2d", [y, m.add_constant(f"w{i}", rnd(rng, 8, 3, 3, 8, scale=0.3))],
                       dict(pads=[1, 1, 1, 1], act="relu"))
    m.outputs = [y]
    sess = slimrt.Session(m)
    for b in (1, 4, 2, 4):  # the batch changes from run to run; plans are cached per shape
        x = rnd(rng, b, 16, 16, 8)
        close(sess.run(x)[0], m.run_reference(x)[0])
    plan = sess.memory_plan((8, 16, 16, 8))
    one = 8 * 16 * 16 * 8 * 4
    # Five intermediate activations (the last one is written into the result array): the planner
    # reuses two buffers, plus the largest conv workspace.
    assert plan["activation_bytes_unplanned"] == 5 * one
    assert plan["arena_bytes"] <= 2 * one + plan["max_workspace_bytes"]


def test_concurrent_runs_identical(rng):
    m = Model(inputs=[("x", (None, 64))])
    h = m.add_node("dense", ["x", m.add_constant("w1", rnd(rng, 256, 64, scale=0.2))], dict(act="gelu"))
    m.outputs = [m.add_node("dense", [h, m.add_constant("w2", rnd(rng, 10, 256, scale=0.2))])]
    sess = slimrt.Session(m, threads=2)
    xs = [rnd(rng, 16, 64) for _ in range(4)]
    want = [sess.run(x)[0] for x in xs]
    errors = []

    def worker(i):
        for _ in range(20):
            got = sess.run(xs[i % 4])[0]
            if not np.array_equal(got, want[i % 4]):
                errors.append(i)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_run_threads_above_the_sessions_are_capped(rng):
    """Workspaces are planned for the session's thread count (per-thread im2col A blocks, attention
    heads): run(threads=) above it runs on the session's count instead of writing past them (this
    im2col convolution crashed with threads=8 on a 1-thread session)."""
    m = Model(inputs=[("x", (None, 14, 14, 256))])
    y = m.add_node("conv2d", ["x", m.add_constant("w", rnd(rng, 256, 3, 3, 256, scale=0.05))], dict(pads=[1, 1, 1, 1]))
    seq = m.add_node("reshape", [y], dict(shape=[0, 196, 256]))
    m.outputs = [y, m.add_node("attention", [seq, seq, seq], dict(heads=4))]
    x = rnd(rng, 4, 14, 14, 256)
    sess = slimrt.Session(m, threads=1)
    want = sess.run(x)
    for t in (2, 8):
        got = sess.run(x, threads=t)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
    ref = m.run_reference(x)
    for g, w in zip(want, ref):
        close(g, w, 1e-3)


def test_input_errors(rng):
    m = Model(inputs=[("x", (None, 4))])
    m.outputs = [m.add_node("dense", ["x", m.add_constant("w", rnd(rng, 3, 4))])]
    sess = slimrt.Session(m)
    with pytest.raises(slimrt.InputError, match="shape"):
        sess.run(np.zeros((2, 5), np.float32))
    with pytest.raises(slimrt.InputError, match="dtype"):
        sess.run(np.zeros((2, 4), np.int32))
    with pytest.raises(slimrt.InputError, match="missing"):
        sess.run({"y": np.zeros((2, 4), np.float32)})
    with pytest.raises(slimrt.InputError):
        sess.run([np.zeros((2, 4), np.float32)] * 2)
    # float64 input is accepted and converted
    close(sess.run(np.ones((2, 4)))[0], m.run_reference(np.ones((2, 4), np.float32))[0])
    ids = Model(inputs=[("i", (None,), "int32")])
    ids.outputs = [ids.add_node("embedding", ["i", ids.add_constant("t", rnd(rng, 5, 2))])]
    with pytest.raises(slimrt.InputError, match="out of range"):
        slimrt.Session(ids).run(np.array([1, 7], np.int32))


def test_unknown_isa_rejected():
    m = Model(inputs=[("x", (None, 4))])
    m.outputs = [m.add_node("activation", ["x"], dict(act="relu"))]
    with pytest.raises(slimrt.InputError, match="unknown ISA"):
        slimrt.Session(m, isa="sse9")


def _formats(rng, w):
    """The same weight matrix [N, K] in each storage format the runtime executes natively."""
    from slimrt.formats import CSR, Codebook, Dense, Log2, QInt8

    n, k = w.shape
    sparse = np.where(np.abs(w) > 0.8, w, 0).astype(np.float32)
    s = np.abs(w).max(1) / 127
    idx = rng.integers(0, 16, (n, k))
    codes = rng.integers(0, 16, (n, k))  # sign bit + 3-bit magnitude; 8 would be "-0", which files may not hold
    return {
        "csr_f32": (CSR.from_dense(sparse), "csr_f32"),
        "csr_int8": (CSR.from_dense(sparse, lambda v, r: QInt8(np.round(v / s[r]).astype(np.int8), s, axis=0,
                                                                 shape=(v.size,), channels=n)), "csr_int8"),
        "csr_codebook": (CSR.from_dense(sparse, lambda v, r: Codebook(rng.integers(0, 4, v.size), rnd(rng, 4), 2)),
                         "csr_lut4"),
        "csr_codebook_rows": (CSR.from_dense(sparse, lambda v, r: Codebook(rng.integers(0, 16, v.size),
                                                                             rnd(rng, n, 16), 4, axis=0,
                                                                             shape=(v.size,), channels=n)),
                              "csr_lut4"),
        "csr_log2": (CSR.from_dense(sparse, lambda v, r: Log2(np.where(codes.ravel()[:v.size] == 8, 0,
                                                                        codes.ravel()[:v.size]),
                                                               np.abs(rnd(rng, n)) + 0.1, 4, axis=0,
                                                               shape=(v.size,), channels=n)), "csr_lut4"),
        "codebook4": (Codebook(idx, rnd(rng, 16), 4), "codebook4"),
        "codebook4_rows": (Codebook(idx, rnd(rng, n, 16), 4, axis=0), "codebook4"),
        "codebook3": (Codebook(rng.integers(0, 8, (n, k)), rnd(rng, 8), 3), "codebook3"),
        "log2": (Log2(np.where(codes == 8, 0, codes), np.abs(rnd(rng, n)) + 0.1, 4, axis=0), "log2"),
        "dense": (Dense(w), "sgemm"),
    }


@pytest.mark.parametrize("fmt", ["csr_f32", "csr_int8", "csr_codebook", "csr_codebook_rows", "csr_log2", "codebook4",
                                 "codebook4_rows", "codebook3", "log2", "dense"])
def test_compressed_weights_run_natively(rng, fmt):
    """Dense and conv layers on every weight format, checked against the decoded reference."""
    w = rnd(rng, 12, 36)
    t, kernel = _formats(rng, w)[fmt]
    # <= 4-bit log2 runs the int8-table kernel on VNNI: u8 activations, int8 tolerance
    tol = 2e-2 if fmt == "log2" else RTOL
    m = Model(inputs=[("x", (None, 36))])
    m.outputs = [m.add_node("dense", ["x", m.add_constant("w", t), m.add_constant("b", rnd(rng, 12))],
                            dict(act="relu"))]
    check(m, rnd(rng, 5, 36), tol=tol)
    assert kernel in slimrt.Session(m).kernels()[0][2]
    # conv: the same matrix as [O=12, KH=3, KW=3, Cg=4] (CSR keeps it 2-D with the kernel attribute)
    c = Model(inputs=[("x", (None, 7, 6, 4))])
    wt = t if fmt.startswith("csr") else _reshaped(t, (12, 3, 3, 4))
    attrs = dict(pads=[1, 1, 1, 1], strides=[2, 1])
    if fmt.startswith("csr"):
        attrs["kernel"] = [3, 3]
    c.outputs = [c.add_node("conv2d", ["x", c.add_constant("w", wt)], attrs)]
    check(c, rnd(rng, 2, 7, 6, 4), threads=(2,), tol=tol)
    conv_kernel = slimrt.Session(c).kernels()[0][2]
    assert kernel in conv_kernel or (fmt == "dense" and conv_kernel.startswith("conv_direct"))


def _reshaped(t, shape):
    from slimrt.formats import Codebook, Dense, Log2

    if isinstance(t, Dense):
        return Dense(t.data.reshape(shape))
    if isinstance(t, Codebook):
        return Codebook(t.packed, t.lut, t.bits, axis=t.axis, shape=shape, packed=True)
    return Log2(t.packed, t.scale, t.bits, axis=t.axis, shape=shape, packed=True)


def test_int8_weights_run_on_the_int8_kernel(rng):
    """int8 weights run the int8 GEMM with activations quantized at run time: results are within the
    activation quantization error (u8, per row / per image) of the decoded reference."""
    from slimrt.formats import QInt8

    w = rnd(rng, 24, 40, scale=0.3)
    s = np.abs(w).max(1) / 127
    q = QInt8(np.round(w / s[:, None]).astype(np.int8), s, axis=0)
    m = Model(inputs=[("x", (None, 40))])
    m.outputs = [m.add_node("dense", ["x", m.add_constant("w", q)])]
    check(m, rnd(rng, 9, 40), tol=2e-2)
    assert "q8_dynamic" in slimrt.Session(m).kernels()[0][2]
    # convs: int8 from 16 outputs with C % 4 == 0 taps; fewer outputs (or C = 5 taps with <= 32 outputs)
    # run the fp32 direct conv on the decoded weights, which measured faster (ops/weights.cpp q8_conv_loses)
    for o, cin, want in ((16, 8, "q8_dynamic"), (8, 8, "conv_direct"), (24, 5, "conv_direct"), (40, 5, "q8_dynamic")):
        wc = rnd(rng, o, 3, 3, cin, scale=0.3)
        sc = np.abs(wc).reshape(o, -1).max(1) / 127
        qc = QInt8(np.round(wc / sc[:, None, None, None]).astype(np.int8), sc, axis=0)
        c = Model(inputs=[("x", (None, 6, 7, cin))])
        c.outputs = [c.add_node("conv2d", ["x", c.add_constant("w", qc)], dict(pads=[1, 1, 1, 1]))]
        check(c, rnd(rng, 2, 6, 7, cin), tol=2e-2)
        got = slimrt.Session(c).kernels()[0][2]
        assert want in got or slimrt.Session(c).isa == "scalar", (o, cin, got)


def test_profile_times_every_kernel_node(rng):
    """Session.profile: one row per node that runs a kernel (views such as flatten left out), each
    with the kernel the plan chose, times > 0, percentages summing to 100; profiled runs compute the
    same outputs and leave the scheduler alone; runs < 1 is an InputError."""
    m = Model(inputs=[("x", (None, 6, 6, 3))])
    y = m.add_node("conv2d", ["x", m.add_constant("w", rnd(rng, 4, 3, 3, 3))], dict(pads=[1, 1, 1, 1], act="relu"))
    y = m.add_node("flatten", [y])
    m.outputs = [m.add_node("dense", [y, m.add_constant("d", rnd(rng, 5, 144))])]
    s = slimrt.Session(m)
    x = rnd(rng, 2, 6, 6, 3)
    want = s.run(x)[0]
    p = s.profile(x, runs=3)
    ops = sorted(r["op"] for r in p["rows"])
    assert ops == ["conv2d", "dense"]
    kernels = {r["node"]: r["kernel"] for r in p["rows"]}
    assert kernels == {n: k for n, op, k in s.kernels(x.shape) if op != "flatten"}
    assert all(r["ms"] > 0 for r in p["rows"]) and p["ms"] > 0
    assert abs(sum(r["pct"] for r in p["rows"]) - 100) < 1e-6
    np.testing.assert_array_equal(s.run(x)[0], want)
    with pytest.raises(slimrt.InputError):
        s.profile(x, runs=0)


def test_tuned_plan_picks_a_variant_and_keeps_results(rng):
    """tune=True times the codebook kernel against its fp32 decoding per shape (for the 3x3 conv also
    Winograd on that decoding); whichever wins, the outputs are the same model's (within float tolerance)."""
    from slimrt.formats import Codebook

    m = Model(inputs=[("x", (None, 6, 6, 8))])
    w = Codebook(rng.integers(0, 16, (16, 3, 3, 8)), rnd(rng, 16), 4)
    y = m.add_node("conv2d", ["x", m.add_constant("w", w)], dict(pads=[1, 1, 1, 1], act="relu"))
    y = m.add_node("flatten", [y])
    m.outputs = [m.add_node("dense", [y, m.add_constant("d", Codebook(rng.integers(0, 16, (10, 576)), rnd(rng, 16), 4))])]
    x = rnd(rng, 3, 6, 6, 8)
    tuned = slimrt.Session(m, tune=True)
    close(tuned.run(x)[0], m.run_reference(x)[0])
    names = [k for _, op, k in tuned.kernels((3, 6, 6, 8)) if op in ("conv2d", "dense")]
    assert len(names) == 2 and all(("codebook4" in k) or ("sgemm" in k) or ("conv_direct" in k) or
                                   ("conv_winograd" in k) for k in names)
    plain = slimrt.Session(m)
    assert all("codebook4" in k for _, op, k in plain.kernels((3, 6, 6, 8)) if op in ("conv2d", "dense"))


@pytest.mark.parametrize("axis", [0, -1])
def test_embedding_int8_table_gathers_int8_rows(rng, axis):
    """An int8 table (per row or per tensor) is gathered as int8 rows and scaled, not decoded at load."""
    from slimrt.formats import QInt8

    v, d = 50, 24
    q = rng.integers(-127, 128, (v, d)).astype(np.int8)
    scale = (np.abs(rnd(rng, v)) + 0.01) if axis == 0 else np.array([0.02], np.float32)
    m = Model(inputs=[("ids", (None, 7), "int64")])
    m.outputs = [m.add_node("embedding", ["ids", m.add_constant("table", QInt8(q, scale, axis=axis))])]
    ids = rng.integers(0, v, (3, 7)).astype(np.int64)
    want = (q.astype(np.float64) * (scale[:, None] if axis == 0 else scale[0]))[ids]
    for isa in ISAS:
        sess = slimrt.Session(m, isa=isa)
        assert sess.kernels()[0][2] == "gather_int8"
        np.testing.assert_allclose(sess.run(ids)[0], want, rtol=1e-6, atol=0)
    with pytest.raises(slimrt.InputError, match="id 50 out of range"):
        slimrt.Session(m).run(np.full((1, 7), 50, np.int64))

"""Host-tuned plans stored in the file (slimrt.tuning, `slimrt tune`): choices are recorded per
(node, input shapes) under the CPU signature, reused without tuning on a matching signature,
ignored on another one, and garbage records never break a load."""
import numpy as np
import pytest

import slimrt
from slimrt import slimfile, tuning
from slimrt.cli import main as cli_main

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def sparse_mlp(tmp_path_factory):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    model = slimrt.from_torch(net, (torch.randn(2, 64),)).compress(prune=0.9, seed=0)
    path = tmp_path_factory.mktemp("tune") / "m.slim"
    model.save(path)
    return path, model


def _kernel(sess, node, shape):
    return {n: k for n, _, k in sess.kernels(shape)}[node]


def _key(path, node, batch):
    """The record key of `node` at this batch (as a tuned session records it)."""
    probe = slimrt.Session(path, tune=True)
    probe.run(np.zeros((batch, 64), np.float32))
    return next(k for k in probe.tuning() if k.startswith(node + f"|{batch}x"))


def _sparse_node(model):
    for n in model.nodes:
        if n.op == "dense" and type(model.constants[n.inputs[1]]).__name__ == "CSR":
            return n.name
    raise AssertionError("no CSR dense layer")


def test_tune_writes_records_and_a_new_session_reuses_them(sparse_mlp, tmp_path):
    path, model = sparse_mlp
    out = tmp_path / "tuned.slim"
    r = tuning.tune(path, batches=[1, 8], output=out)
    sig = r["signature"]
    assert sig == slimrt.Session(path).tuning_signature
    stored = slimrt.load(out).metadata["tuning/" + sig]
    recs = tuning.parse_records(stored)
    assert recs == r["records"] and len(recs) >= 2
    assert all("|" in k for k in recs)
    sess = slimrt.Session(out)  # no tune: the stored choices are applied, not timed again
    sess.run(np.zeros((8, 64), np.float32))
    assert sess.tuning() == {k: v for k, v in recs.items() if "|8x64" in k or "|8x128" in k}
    # outputs of the tuned file equal the untuned model's within fp32 tolerance
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    np.testing.assert_allclose(sess.run(x)[0], slimrt.Session(path).run(x)[0], rtol=1e-4, atol=1e-4)


def test_stored_choice_is_applied_without_tune(sparse_mlp, tmp_path):
    path, model = sparse_mlp
    node = _sparse_node(model)
    plain = slimrt.Session(path)
    native = _kernel(plain, node, (8, 64))
    assert native.startswith("csr_")
    fp32 = "sgemm_" + plain.isa
    m = slimrt.load(path)
    key = _key(path, node, 8)  # the record: this node at batch 8 runs the fp32 variant
    m.metadata["tuning/" + plain.tuning_signature] = tuning.format_records({key: fp32})
    forced = tmp_path / "forced.slim"
    slimfile.save(m, forced)
    s = slimrt.Session(forced)
    assert _kernel(s, node, (8, 64)) == fp32          # stored choice, tune off
    assert _kernel(s, node, (4, 64)) == native        # shapes without a record: the default
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    np.testing.assert_allclose(s.run(x)[0], plain.run(x)[0], rtol=1e-4, atol=1e-4)


def test_other_signature_and_garbage_are_ignored(sparse_mlp, tmp_path):
    path, model = sparse_mlp
    node = _sparse_node(model)
    sess = slimrt.Session(path)
    sig, key = sess.tuning_signature, _key(path, node, 8)
    m = slimrt.load(path)
    m.metadata["tuning/SomeOtherCPU/x/avx2/t7"] = f"{key}\tsgemm_{sess.isa}\n"
    m.metadata["tuning/" + sig] = "no tab here\n\t\n|\tx\n" + f"{key}\tno_such_kernel\n" + "\u00ff\u2603 end"
    bad = tmp_path / "bad.slim"
    slimfile.save(m, bad)
    s = slimrt.Session(bad)
    assert _kernel(s, node, (8, 64)).startswith("csr_")
    assert s.run(np.ones((8, 64), np.float32))[0].shape == (8, 10)


def test_cli_tune(sparse_mlp, tmp_path, capsys):
    path, _ = sparse_mlp
    out = tmp_path / "cli.slim"
    assert cli_main(["tune", str(path), "--batch", "1,4", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "kernel choice(s) stored" in text
    sig = slimrt.Session(out).tuning_signature
    assert "tuning/" + sig in slimrt.load(out).metadata
    assert cli_main(["tune", str(path), "--batch", "0"]) == 2


@pytest.mark.parametrize("hw,cin,cout,k", [(4, 64, 64, 3), (6, 40, 96, 1), (5, 8, 24, 3)])
def test_dense_conv_times_both_fp32_paths(tmp_path, hw, cin, cout, k):
    """A dense fp32 convolution offers every fp32 path to the tuner: the one its weight shape picks
    (direct kernel or im2col GEMM), the other, and for a 3x3 stride-1 convolution Winograd F(4x4, 3x3).
    Tuning records one of them; a stored choice of any runs it without tuning, with the untuned
    session's results."""
    rng = np.random.default_rng(hw)
    m = slimrt.Model(inputs=[("x", (None, hw, hw, cin))])
    w = m.add_constant("w", (rng.standard_normal((cout, k, k, cin)) * 0.1).astype(np.float32))
    b = m.add_constant("b", rng.standard_normal(cout).astype(np.float32))
    p = k // 2
    m.outputs = [m.add_node("conv2d", ["x", w, b], dict(pads=[p, p, p, p], act="relu"))]
    node = m.nodes[0].name
    path = tmp_path / "conv.slim"
    m.save(path)
    x = rng.standard_normal((1, hw, hw, cin)).astype(np.float32)
    plain = slimrt.Session(path)
    default = _kernel(plain, node, x.shape)
    isa = plain.isa
    gemm = f"conv1x1_sgemm_{isa}" if k == 1 else f"conv_im2col_sgemm_{isa}"
    paths = {f"conv_direct_{isa}", gemm} | ({f"conv_winograd_{isa}"} if k == 3 else set())
    if isa == "scalar":
        assert default == "conv_im2col_sgemm_scalar" or default == "conv1x1_sgemm_scalar"
        pytest.skip("the scalar ISA has one fp32 path")
    assert default in paths
    tuned = slimrt.Session(path, tune=True)
    tuned.run(x)
    (key, choice), = tuned.tuning().items()
    assert key.startswith(node + "|") and choice in paths
    for kernel in sorted(paths):
        mm = slimrt.load(path)
        mm.metadata["tuning/" + plain.tuning_signature] = tuning.format_records({key: kernel})
        forced = tmp_path / f"{kernel}.slim"
        slimfile.save(mm, forced)
        s = slimrt.Session(forced)
        assert _kernel(s, node, x.shape) == kernel
        np.testing.assert_allclose(s.run(x)[0], plain.run(x)[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tuned.run(x)[0], m.run_reference({"x": x})[0], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("recipe", [dict(share=16), dict(quant="int8")])
def test_compressed_conv_offers_winograd_when_tuning(tmp_path, recipe):
    """Tuning a compressed 3x3 stride-1 convolution also times Winograd on its fp32 decoding (never the
    default of an untuned session, which keeps the compressed kernel); a stored choice of it runs it,
    within float rounding of the compressed model's float64 reference (the decoded weights, float
    activations)."""
    rng = np.random.default_rng(5)
    m = slimrt.Model(inputs=[("x", (None, 8, 8, 16))])
    w = m.add_constant("w", (rng.standard_normal((24, 3, 3, 16)) * 0.1).astype(np.float32))
    m.outputs = [m.add_node("conv2d", ["x", w], dict(pads=[1, 1, 1, 1], act="relu"))]
    c = m.compress(seed=0, **recipe)
    node = c.nodes[0].name
    path = tmp_path / "c.slim"
    c.save(path)
    x = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    plain = slimrt.Session(path)
    isa = plain.isa
    assert "winograd" not in _kernel(plain, node, x.shape)
    if isa == "scalar":
        pytest.skip("no Winograd kernel on the scalar ISA")
    tuned = slimrt.Session(path, tune=True)
    tuned.run(x)
    (key, _), = tuned.tuning().items()
    mm = slimrt.load(path)
    mm.metadata["tuning/" + plain.tuning_signature] = tuning.format_records({key: f"conv_winograd_{isa}"})
    forced = tmp_path / "w.slim"
    slimfile.save(mm, forced)
    s = slimrt.Session(forced)
    assert _kernel(s, node, x.shape) == f"conv_winograd_{isa}"
    want = c.run_reference({"x": x})[0]
    assert np.abs(s.run(x)[0] - want).max() <= 1e-5 * np.abs(want).max()

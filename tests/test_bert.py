"""BERT-class encoders imported from PyTorch (slimrt.from_torch), run natively, and compressed.

Parity: max|y_slim - y_torch| / max|y_torch| <= 1e-4 (fp32) on random ids with padding masks, for every ISA
this CPU supports. Sequence length and batch are dynamic: a model converted at one length runs at 1, 7, 64,
128 ... up to the position table (max_position_embeddings); a longer input raises InputError.
Eager attention (Hugging Face) becomes one ``attention`` node per layer, SDPA (nn.TransformerEncoder) a
``scaled_masked_softmax`` between its matmuls; both ops are tested directly against numpy with every mask
broadcast their row addressing must handle, and the dynamic-shape ops reshape_dims and slice_like against
the float64 reference executor.
Compression: cosine similarity of masked-mean sentence embeddings vs fp32 on 20 English sentences.
"""
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import slimrt  # noqa: E402
from slimrt import Model  # noqa: E402
from slimrt._native import core  # noqa: E402

RTOL = 1e-4
ISAS = list(core.cpu_info()["supported_isas"])


def _rel(g, w):
    w = np.asarray(w, np.float64)
    return float(np.max(np.abs(np.asarray(g, np.float64) - w)) / max(np.max(np.abs(w)), 1e-30))


# ------------------------------------------------------------------ torch.nn.TransformerEncoder
class _Enc(torch.nn.Module):
    def __init__(self, layers=2, d=64, heads=4, ff=96, norm_first=False, act="relu"):
        super().__init__()
        torch.manual_seed(1)
        layer = torch.nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True, norm_first=norm_first,
                                                 activation=act)
        self.enc = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x, mask=None):
        return self.enc(x, src_key_padding_mask=mask)


def _pad_mask(rng, b, s):
    """Additive float key-padding mask: row i keeps its first L_i tokens (L_i >= 1), -inf on the rest."""
    m = np.zeros((b, s), np.float32)
    for i in range(b):
        m[i, rng.integers(1, s + 1):] = -np.inf
    m[-1, max(1, s // 2):] = -np.inf  # at least one padded row
    return m


def _enc_feeds(rng, b, s, masked):
    feeds = [rng.standard_normal((b, s, 64)).astype(np.float32)]
    if masked:
        feeds.append(_pad_mask(rng, b, s) if s > 1 else np.zeros((b, s), np.float32))
    return feeds


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder(masked, norm_first):
    """Converted at seq 128, run at other lengths and batches."""
    mod = _Enc(norm_first=norm_first, act="gelu" if norm_first else "relu").eval()
    rng = np.random.default_rng(11)
    m = slimrt.from_torch(mod, tuple(torch.from_numpy(f) for f in _enc_feeds(rng, 2, 128, masked)))
    assert m.inputs[0].shape == (None, None, 64)
    ops = [n.op for n in m.nodes]
    # torch's packed in-projection + head split / merge fused (fuse_packed_attention): one attention
    # node per layer, no slices; once optimized, no transposes left (sink_transposes)
    assert ops.count("attention") == 2 and "softmax" not in ops and "scaled_masked_softmax" not in ops
    assert "slice" not in ops
    assert "transpose" not in [n.op for n in m.optimize().nodes]
    for isa in ISAS:
        s = slimrt.Session(m, isa=isa, threads=2)
        for b, seq in ((1, 1), (3, 7), (2, 64), (1, 128), (2, 200)):
            feeds = _enc_feeds(rng, b, seq, masked)
            with torch.no_grad():
                want = mod(*[torch.from_numpy(f) for f in feeds]).numpy()
            got = s.run({i.name: f for i, f in zip(m.inputs, feeds)})[0]
            assert got.shape == want.shape
            assert _rel(got, want) <= RTOL, (isa, b, seq)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_fused(batch_first):
    """nn.MultiheadAttention (packed in-projection): three projections + one attention node, no slices;
    a sequence-first module keeps only the transposes of its input and output."""
    torch.manual_seed(5)

    class MHA(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.MultiheadAttention(64, 4, batch_first=batch_first)

        def forward(self, x):
            return self.a(x, x, x, need_weights=False)[0]

    mod = MHA().eval()
    shape = (2, 9, 64) if batch_first else (9, 2, 64)
    m = slimrt.from_torch(mod, torch.randn(*shape)).optimize()
    ops = [n.op for n in m.nodes]
    assert ops.count("attention") == 1 and ops.count("dense") == 4 and "slice" not in ops
    assert ops.count("transpose") == (0 if batch_first else 2)
    s = slimrt.Session(m, threads=2)
    for b, seq in ((1, 1), (3, 5), (2, 33)):
        x = torch.randn(*((b, seq, 64) if batch_first else (seq, b, 64)))
        with torch.no_grad():
            want = mod(x).numpy()
        assert _rel(s.run(x.numpy())[0], want) <= RTOL


def test_transformer_encoder_fixed_length_still_available():
    """dynamic_seq=False keeps the example's length (the earlier behaviour); a wrong length is refused."""
    mod = _Enc().eval()
    x = torch.randn(2, 9, 64)
    m = slimrt.from_torch(mod, (x,), dynamic_seq=False)
    assert m.inputs[0].shape == (None, 9, 64)
    with torch.no_grad():
        want = mod(x[:1]).numpy()
    s = slimrt.Session(m, threads=2)
    assert _rel(s.run(x[:1].numpy())[0], want) <= RTOL
    with pytest.raises(slimrt.InputError):
        s.run(np.zeros((1, 10, 64), np.float32))


def test_optimized_and_saved_encoder_keeps_dynamic_length(tmp_path):
    mod = _Enc(norm_first=True, act="gelu").eval()
    rng = np.random.default_rng(3)
    m = slimrt.from_torch(mod, tuple(torch.from_numpy(f) for f in _enc_feeds(rng, 2, 32, True)))
    path = m.save(str(tmp_path / "enc.slim"))  # runs the optimizer
    s = slimrt.Session(path, threads=2)
    for b, seq in ((1, 5), (2, 48)):
        feeds = _enc_feeds(rng, b, seq, True)
        with torch.no_grad():
            want = mod(*[torch.from_numpy(f) for f in feeds]).numpy()
        assert _rel(s.run(feeds)[0], want) <= RTOL


# ------------------------------------------------------------------ Hugging Face BertModel
def _bert(layers=2, vocab=1000, pooler=True):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                                  intermediate_size=1536, attn_implementation="eager")
    return transformers.BertModel(cfg, add_pooling_layer=pooler).eval()


def _bert_inputs(rng, b, s, vocab=1000):
    ids = rng.integers(0, vocab, (b, s)).astype(np.int64)
    am = np.ones((b, s), np.int64)
    for i in range(b):
        am[i, rng.integers(1, s + 1):] = 0
    am[-1, max(1, s // 2):] = 0
    tt = rng.integers(0, 2, (b, s)).astype(np.int64)
    return ids, am, tt


@pytest.fixture(scope="module")
def bert():
    return _bert()


def _check_bert(bert, s, b, seq, rng, isa=""):
    ids, am, tt = _bert_inputs(rng, b, seq)
    with torch.no_grad():
        o = bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(am),
                 token_type_ids=torch.from_numpy(tt))
    hs, pooled = o.last_hidden_state.numpy(), o.pooler_output.numpy()
    mean = slimrt.frontends.torch.masked_mean_pool(hs, am)
    got = s.run({"input_ids": ids, "attention_mask": am, "token_type_ids": tt})
    for g, w in zip(got, (hs, pooled, mean)):
        assert g.shape == w.shape
        assert _rel(g, w) <= RTOL, (isa, b, seq)
    np.testing.assert_allclose(slimrt.frontends.torch.cls_pool(got[0]), hs[:, 0], rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def bert128(bert):
    """The model converted once, at batch 2 x seq 128."""
    ex = _bert_inputs(np.random.default_rng(128), 2, 128)
    return slimrt.from_torch(bert, tuple(torch.from_numpy(a) for a in ex))


def test_bert_matches_torch(bert, bert128):
    m = bert128
    assert [i.name for i in m.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert m.outputs == ["last_hidden_state", "pooler_output", "mean_pooled"]
    assert all(i.shape == (None, None) for i in m.inputs)
    assert not bert.training
    ops = [n.op for n in m.nodes]
    # head split, q k^T, scale + mask + softmax, @ v and head merge: one attention node per layer, no transposes
    assert ops.count("attention") == 2 and not {"softmax", "scaled_masked_softmax", "matmul", "transpose"} & set(ops)
    rng = np.random.default_rng(9)
    for isa in ISAS:
        s = slimrt.Session(m, isa=isa, threads=2)
        for b, seq in ((1, 1), (4, 7), (2, 64), (1, 128), (3, 33)):
            _check_bert(bert, s, b, seq, rng, isa)


def test_bert_up_to_the_position_table_and_beyond(bert, bert128):
    n_pos = bert.config.max_position_embeddings
    s = slimrt.Session(bert128, threads=2)
    _check_bert(bert, s, 1, n_pos, np.random.default_rng(1))
    ids, am, tt = _bert_inputs(np.random.default_rng(2), 2, n_pos + 1)
    feeds = {"input_ids": ids, "attention_mask": am, "token_type_ids": tt}
    with pytest.raises(slimrt.InputError, match=f"position_embeddings.*{n_pos + 1}.*exceeds the {n_pos}"):
        s.run(feeds)
    with pytest.raises(slimrt.InputError, match="exceeds"):
        bert128.run_reference({k: v[:1] for k, v in feeds.items()})
    _check_bert(bert, s, 2, 5, np.random.default_rng(3))  # the session is still usable


def test_bert_reference_executor_agrees(bert128):
    """The float64 reference executor runs the new ops too (slice_like, attention)."""
    ops = {n.op for n in bert128.nodes}
    assert {"slice_like", "attention"} <= ops
    ids, am, tt = _bert_inputs(np.random.default_rng(4), 2, 11)
    feeds = {"input_ids": ids, "attention_mask": am, "token_type_ids": tt}
    want = bert128.run_reference(feeds)
    got = slimrt.Session(bert128, threads=2).run(feeds)
    for g, w in zip(got, want):
        assert _rel(g, w) <= RTOL


def test_bert_without_token_types_or_pooler():
    bert = _bert(layers=1, pooler=False)
    rng = np.random.default_rng(5)
    ids, am, _ = _bert_inputs(rng, 2, 12)
    m = slimrt.from_torch(bert, (torch.from_numpy(ids), torch.from_numpy(am)))
    assert m.outputs == ["last_hidden_state", "mean_pooled"]
    ids, am, _ = _bert_inputs(rng, 3, 12)
    with torch.no_grad():
        hs = bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(am)).last_hidden_state.numpy()
    got = slimrt.Session(m, threads=2).run({"input_ids": ids, "attention_mask": am})
    assert _rel(got[0], hs) <= RTOL


def test_bert_rejects_non_binary_mask(bert128):
    ids, am, tt = _bert_inputs(np.random.default_rng(0), 2, 8)
    am[0, 0] = 2
    with pytest.raises(slimrt.InputError, match="out of range"):
        slimrt.Session(bert128, threads=2).run({"input_ids": ids, "attention_mask": am, "token_type_ids": tt})


# ------------------------------------------------------------------ compression on real sentences
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "She sells sea shells by the sea shore.",
    "The weather today is cold and rainy in the north.",
    "Our team shipped the new release on Friday afternoon.",
    "Please remember to water the plants while I am away.",
    "He read the whole novel in one long evening.",
    "The museum opens at nine and closes at five.",
    "Fresh bread smells wonderful early in the morning.",
    "The children played football in the park until dark.",
    "Interest rates rose again after the central bank meeting.",
    "My grandmother taught me how to bake apple pie.",
    "The train to London was delayed by twenty minutes.",
    "Scientists discovered a new species of frog in the rainforest.",
    "Turn left at the second traffic light and park behind the shop.",
    "The concert was sold out weeks before the show.",
    "I forgot my umbrella and got completely soaked.",
    "Good software is tested, documented and easy to change.",
    "The cat slept on the warm windowsill all afternoon.",
    "They climbed the mountain and watched the sun rise.",
]


def tokenize(sentences, vocab, seq):
    """Deterministic word-level tokenizer: [CLS]=1, [SEP]=2, words hashed (crc32) into [3, vocab); pad 0."""
    ids = np.zeros((len(sentences), seq), np.int64)
    am = np.zeros_like(ids)
    for i, s in enumerate(sentences):
        words = "".join(ch.lower() if ch.isalnum() else " " for ch in s).split()
        toks = [1] + [3 + zlib.crc32(w.encode()) % (vocab - 3) for w in words][:seq - 2] + [2]
        ids[i, :len(toks)] = toks
        am[i, :len(toks)] = 1
    return ids, am


def _cos(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_bert_compression_cosine(bert):
    vocab = bert.config.vocab_size
    ids, am = tokenize(SENTENCES, vocab, 24)
    tt = np.zeros_like(ids)
    m = slimrt.from_torch(bert, tuple(torch.from_numpy(a) for a in (ids[:2], am[:2], tt[:2])))
    feeds = {"input_ids": ids, "attention_mask": am, "token_type_ids": tt}
    ref = slimrt.Session(m, threads=2).run(feeds)
    n_dense = sum(n.op == "dense" for n in m.nodes)
    assert n_dense == 2 * 6 + 1
    results = {}
    for tag, kw, floor in (("int8", dict(quant="int8"), 0.99),
                           ("int8 + int8 attention", dict(quant="int8", attention="int8"), 0.99),
                           ("share16", dict(share=16, share_mode="per_channel"), 0.97)):
        cm = m.compress(**kw)
        attn = [n.attrs.get("int8", 0) for n in cm.nodes if n.op == "attention"]
        assert len(attn) == 2 and all(a == int("attention" in kw) for a in attn), attn
        got = slimrt.Session(cm, threads=2).run(feeds)
        cos_mean = _cos(got[2], ref[2])
        cos_pool = _cos(got[1], ref[1])
        results[tag] = (float(cos_mean.min()), float(cos_mean.mean()), float(cos_pool.min()))
        print(f"{tag}: mean-pooled cosine min {cos_mean.min():.5f} mean {cos_mean.mean():.5f}; "
              f"pooler cosine min {cos_pool.min():.5f}")
        assert cos_mean.min() >= floor, (tag, results[tag])
        assert cos_pool.min() >= floor, (tag, results[tag])


# ------------------------------------------------------------------ the ops behind dynamic attention
def _sm_ref(x, mask, scale):
    v = x.astype(np.float64) * scale + (0.0 if mask is None else mask.astype(np.float64))
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# (scores shape, mask shape): key padding, causal, full, per-batch-and-query (walked leading dims), a mask row
# for all, no mask; last dims 1, tile-1, tile, tile+1 and a prime.
SOFTMAX_CASES = [
    ((2, 3, 5, 16), (2, 1, 1, 16)), ((2, 3, 17, 17), (17, 17)), ((2, 3, 7, 15), (2, 3, 7, 15)),
    ((3, 2, 4, 33), (3, 1, 4, 33)), ((2, 2, 3, 31), (1, 31)), ((4, 9), (9,)), ((2, 5, 1), (2, 1, 1)),
    ((3, 4, 6, 8), None), ((2, 3, 2, 5, 7), (2, 1, 2, 1, 7)),
]


@pytest.mark.parametrize("shape,mshape", SOFTMAX_CASES, ids=lambda v: "x".join(map(str, v)) if v else "none")
def test_scaled_masked_softmax_op(shape, mshape):
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    m = Model(inputs=[("x", (None,) + shape[1:])] + ([("mask", mshape)] if mshape else []))
    ins = ["x"] + (["mask"] if mshape else [])
    m.outputs = [m.add_node("scaled_masked_softmax", ins, {"scale": 0.125})]
    x = (rng.standard_normal(shape) * 8).astype(np.float32)
    feeds = {"x": x}
    mask = None
    if mshape:
        mask = np.where(rng.random(mshape) < 0.3, np.float32(np.finfo(np.float32).min), 0.0).astype(np.float32)
        mask[..., 0] = 0.0  # every row keeps a token
        mask[..., -1] = -np.inf if shape[-1] > 1 else 0.0
        feeds["mask"] = mask
    want = _sm_ref(x, mask, 0.125)
    assert _rel(m.run_reference(feeds)[0], want) <= 1e-7  # float64 math, float32 result
    for isa in ISAS:
        for threads in (1, 2):
            got = slimrt.Session(m, isa=isa, threads=threads).run(feeds)[0]
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-6, err_msg=f"{isa} threads={threads}")


def test_scaled_masked_softmax_rejects_bad_masks():
    for mshape in ((2, 1, 1, 15), (4, 1, 16), (2, 2, 3, 4, 16)):
        m = Model(inputs=[("x", (2, 3, 4, 16)), ("mask", mshape)])
        m.outputs = [m.add_node("scaled_masked_softmax", ["x", "mask"])]
        with pytest.raises(slimrt.InputError, match="mask"):
            slimrt.Session(m, threads=1).run({"x": np.zeros((2, 3, 4, 16), np.float32),
                                              "mask": np.zeros(mshape, np.float32)})


def _attention_ref(q, k, v, mask, heads, scale):
    b, sq, e = q.shape
    d = e // heads
    split = lambda t: t.astype(np.float64).reshape(b, t.shape[1], heads, d).transpose(0, 2, 1, 3)  # noqa: E731
    s = split(q) @ split(k).transpose(0, 1, 3, 2) * scale + (0.0 if mask is None else mask.astype(np.float64))
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ split(v)).transpose(0, 2, 1, 3).reshape(b, sq, e)


# (batch, q length, k length, heads, head dim), mask shape with B/H/Q/K placeholders
ATTENTION_CASES = [
    ((1, 1, 1, 1, 1), None), ((2, 7, 7, 3, 5), "B11K"), ((2, 16, 16, 12, 32), "B11K"), ((3, 17, 9, 2, 8), "QK"),
    ((2, 33, 33, 4, 16), "BHQK"), ((2, 5, 31, 2, 7), "1H1K"), ((2, 15, 15, 2, 3), "B1QK"), ((1, 9, 4, 3, 4), "K"),
    ((2, 40, 129, 2, 33), "B11K"), ((1, 70, 70, 1, 64), None),  # partial key chunks, 2+ column vectors
]


@pytest.mark.parametrize("dims,mspec", ATTENTION_CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple)
                         else str(v))
def test_attention_op(dims, mspec):
    b, sq, sk, h, d = dims
    rng = np.random.default_rng(sum(dims))
    q, k, v = (rng.standard_normal((b, n, h * d)).astype(np.float32) for n in (sq, sk, sk))
    feeds = {"q": q, "k": k, "v": v}
    mask = None
    inputs = [("q", (None, None, h * d)), ("k", (None, None, h * d)), ("v", (None, None, h * d))]
    if mspec:
        mshape = tuple({"B": b, "H": h, "Q": sq, "K": sk, "1": 1}[c] for c in mspec)
        mask = np.where(rng.random(mshape) < 0.3, np.float32(np.finfo(np.float32).min), 0.0).astype(np.float32)
        mask[..., 0] = 0.0
        if sk > 1:
            mask[..., -1] = -np.inf
        feeds["mask"] = mask
        inputs.append(("mask", mshape))
    m = Model(inputs=inputs)
    m.outputs = [m.add_node("attention", [n for n, _ in inputs], {"heads": h, "scale": 1.0 / np.sqrt(d)})]
    want = _attention_ref(q, k, v, mask, h, 1.0 / np.sqrt(d))
    np.testing.assert_allclose(m.run_reference(feeds)[0], want, rtol=0, atol=1e-6)
    for isa in ISAS:
        for threads in (1, 2):
            got = slimrt.Session(m, isa=isa, threads=threads).run(feeds)[0]
            assert got.shape == want.shape
            assert _rel(got, want) <= 1e-5, (isa, threads)


def _q8_attention_emulated(q, k, v, mask, heads, scale):
    """The int8 attention's equations (kernels/qattn/qattn.h) in numpy: codes from float32 products
    exactly as the kernels compute them, exact integer products, softmax in float64."""
    b, sq, e = q.shape
    d = e // heads
    split = lambda t: t.reshape(b, t.shape[1], heads, d).transpose(0, 2, 1, 3)  # noqa: E731

    def codes(x, axis, levels):
        m = np.abs(x).max(axis=axis, keepdims=True).astype(np.float32)
        with np.errstate(divide="ignore"):
            inv = np.where(m > 0, np.float32(levels) / m, np.float32(0)).astype(np.float32)
        return np.rint(x * inv).astype(np.int64), (m / np.float32(levels)).astype(np.float32)

    cq, sq_ = codes(split(q), -1, 127)
    ck, sk_ = codes(split(k), -1, 127)
    acc = cq @ ck.transpose(0, 1, 3, 2)
    s = acc.astype(np.float32) * (sq_ * sk_.transpose(0, 1, 3, 2))
    s = s.astype(np.float64) * np.float32(scale) + (0.0 if mask is None else mask.astype(np.float64))
    p = np.exp(s - s.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    cp, sp_ = codes(p, -1, 255)
    cv, sv_ = codes(split(v), -2, 127)
    y = (cp @ cv).astype(np.float32) * (sp_ * sv_)
    return y.transpose(0, 2, 1, 3).reshape(b, sq, e), float(np.abs(v).max())


@pytest.mark.parametrize("dims,mspec", ATTENTION_CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_int8_attention_op(dims, mspec):
    """attention with int8=1 on every ISA: the kernel's integer equations (emulated in numpy) up to a
    probability code flipped by the softmax's last-bit rounding (one flip moves an output by at most
    max|v| / 255); within the quantization error of the fp32 attention; the reference executor's
    float64 spec agrees."""
    b, sq, sk, h, d = dims
    rng = np.random.default_rng(sum(dims) + 7)
    q, k, v = (rng.standard_normal((b, n, h * d)).astype(np.float32) for n in (sq, sk, sk))
    q[..., :d] *= 4  # per-token and per-channel ranges differ
    feeds = {"q": q, "k": k, "v": v}
    mask = None
    inputs = [("q", (None, None, h * d)), ("k", (None, None, h * d)), ("v", (None, None, h * d))]
    if mspec:
        mshape = tuple({"B": b, "H": h, "Q": sq, "K": sk, "1": 1}[c] for c in mspec)
        mask = np.where(rng.random(mshape) < 0.3, np.float32(-1e4), 0.0).astype(np.float32)
        mask[..., 0] = 0.0
        feeds["mask"] = mask
        inputs.append(("mask", mshape))
    m = Model(inputs=inputs)
    scale = 1.0 / np.sqrt(d)
    m.outputs = [m.add_node("attention", [n for n, _ in inputs], {"heads": h, "scale": scale, "int8": 1})]
    want, vmax = _q8_attention_emulated(q, k, v, mask, h, scale)
    fp32 = _attention_ref(q, k, v, mask, h, scale)
    assert np.max(np.abs(m.run_reference(feeds)[0] - want)) <= 2 * vmax / 255
    for isa in ISAS:
        for threads in (1, 2):
            s = slimrt.Session(m, isa=isa, threads=threads)
            assert s.kernels()[0][2].startswith("q8_attention_"), s.kernels()
            got = s.run(feeds)[0]
            assert got.shape == want.shape
            err = np.abs(got - want)
            assert err.max() <= 2 * vmax / 255 + 1e-5, (isa, threads, err.max())
            assert np.mean(err > 1e-5 * vmax) < 0.01, (isa, threads)  # flips are rare
            assert _rel(got, fp32) <= 0.05, (isa, threads, _rel(got, fp32))


def test_int8_attention_non_finite_and_zero_inputs():
    """NaN in one query row gives NaN in that row only (as fp32 attention); all-zero q/k/v give 0."""
    m = Model(inputs=[("q", (None, None, 8)), ("k", (None, None, 8)), ("v", (None, None, 8))])
    m.outputs = [m.add_node("attention", ["q", "k", "v"], {"heads": 2, "scale": 0.5, "int8": 1})]
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 5, 8)).astype(np.float32) for _ in range(3))
    q[0, 2, 1] = np.nan
    z = np.zeros((1, 5, 8), np.float32)
    for isa in ISAS:
        s = slimrt.Session(m, isa=isa, threads=1)
        got = s.run({"q": q, "k": k, "v": v})[0]
        assert np.isnan(got[0, 2, :4]).all() and np.isfinite(got[0, 2, 4:]).all(), isa
        assert np.isfinite(np.delete(got[0], 2, axis=0)).all(), isa
        np.testing.assert_array_equal(s.run({"q": z, "k": z, "v": z})[0], z)
    m.nodes[0].attrs["int8"] = 2
    with pytest.raises(slimrt.FormatError, match="int8"):
        slimrt.Session(m, threads=1)


def test_int8_attention_recipe_errors():
    """attention='int8' on a model without attention, or an unknown attention mode, is a CompressionError
    and leaves the input model untouched."""
    m = Model(inputs=[("x", (None, 4))])
    m.outputs = [m.add_node("dense", ["x", m.add_constant("w", np.ones((3, 4), np.float32))])]
    with pytest.raises(slimrt.CompressionError, match="no attention node"):
        m.compress(attention="int8")
    with pytest.raises(slimrt.CompressionError, match="attention must be"):
        m.compress(quant="int8", attention="int4")
    assert m.compress(quant="int8", attention="fp32").nodes[0].op == "dense"


def test_attention_rejects_bad_shapes():
    m = Model(inputs=[("q", (None, None, 12)), ("k", (None, None, 12)), ("v", (None, None, 12)),
                      ("mask", (None, None))])
    m.outputs = [m.add_node("attention", ["q", "k", "v", "mask"], {"heads": 5, "scale": 0.5})]
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    s = slimrt.Session(m, threads=1)
    with pytest.raises(slimrt.InputError, match="multiple of 5 heads"):
        s.run({"q": z(2, 3, 12), "k": z(2, 4, 12), "v": z(2, 4, 12), "mask": z(2, 4)})
    m.nodes[0].attrs["heads"] = 3
    s = slimrt.Session(m, threads=1)
    with pytest.raises(slimrt.InputError, match="do not match"):
        s.run({"q": z(2, 3, 12), "k": z(2, 4, 12), "v": z(2, 5, 12), "mask": z(2, 4)})
    with pytest.raises(slimrt.InputError, match="broadcast"):
        s.run({"q": z(2, 3, 12), "k": z(2, 4, 12), "v": z(2, 4, 12), "mask": z(2, 4)})  # [2, 4] is [Sq=2?, Sk]
    np.testing.assert_array_equal(s.run({"q": z(2, 3, 12), "k": z(2, 4, 12), "v": z(2, 4, 12),
                                         "mask": z(3, 4)})[0], z(2, 3, 12))
    m.nodes[0].attrs["heads"] = 0
    with pytest.raises(slimrt.FormatError, match="heads"):
        slimrt.Session(m, threads=1)


def test_reshape_dims_op():
    """[B*S, H*D] -> [B, S, H, D] with B and S read from a reference input, then -> [B, H*S*D/H]."""
    m = Model(inputs=[("x", (None, 12)), ("ids", (None, None), "int64")])
    y = m.add_node("reshape_dims", ["x", "ids"], {"dims": [-2, -2, 3, -1], "refs": [1, 0, 1, 1]})
    z = m.add_node("reshape_dims", [y, "ids"], {"dims": [0, -1, 4], "refs": []})
    m.outputs = [y, m.add_node("add", [z, m.add_constant("one", np.ones(4, np.float32))])]
    rng = np.random.default_rng(0)
    for b, s in ((1, 1), (2, 7), (3, 5)):
        x = rng.standard_normal((b * s, 12)).astype(np.float32)
        ids = np.zeros((b, s), np.int64)
        want = [x.reshape(b, s, 3, 4), x.reshape(b, -1, 4) + 1]
        for w, r in zip(want, m.run_reference({"x": x, "ids": ids})):
            np.testing.assert_array_equal(r, w)
        for isa in ISAS:
            for w, g in zip(want, slimrt.Session(m, isa=isa, threads=2).run({"x": x, "ids": ids})):
                np.testing.assert_array_equal(g, w)
    with pytest.raises(slimrt.InputError, match="reshape_dims"):
        slimrt.Session(m, threads=1).run({"x": np.zeros((5, 12), np.float32), "ids": np.zeros((2, 4), np.int64)})


@pytest.mark.parametrize("attrs,err", [({"dims": [-2, -1], "refs": []}, "refs"),
                                       ({"dims": [-2, -1], "refs": [0, 0]}, "refs"),
                                       ({"dims": [-1, -1], "refs": []}, "-1"),
                                       ({"dims": [-3, 4], "refs": []}, ">= -2")])
def test_reshape_dims_bad_attributes_refused_at_load(attrs, err):
    m = Model(inputs=[("x", (None, 12)), ("r", (None, 3))])
    m.outputs = [m.add_node("reshape_dims", ["x", "r"], attrs)]
    with pytest.raises(slimrt.FormatError, match=err):
        slimrt.Session(m, threads=1)


def test_slice_like_op():
    """A table cut to the length of the ids (with a start offset), on a computed tensor too."""
    rng = np.random.default_rng(1)
    table = rng.standard_normal((10, 5)).astype(np.float32)
    m = Model(inputs=[("ids", (None, None), "int64"), ("x", (None, None, 5))])
    t = m.add_node("slice_like", [m.add_constant("table", table), "ids"], {"axes": [0], "starts": [2], "ref_axes": [1]})
    cut = m.add_node("slice_like", ["x", "ids"], {"axes": [1, 2], "starts": [1, 0], "ref_axes": [1, 0]})
    m.outputs = [t, cut]
    for b, s in ((1, 1), (2, 3), (3, 8)):
        ids = np.zeros((b, s), np.int64)
        x = rng.standard_normal((b, s + 1, 5)).astype(np.float32)
        want = [table[2:2 + s], x[:, 1:1 + s, :b]]
        for isa in ISAS:
            got = slimrt.Session(m, isa=isa, threads=2).run({"ids": ids, "x": x})
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)
        for g, w in zip(m.run_reference({"ids": ids, "x": x}), want):
            np.testing.assert_array_equal(g, w)
    s = slimrt.Session(m, threads=1)
    with pytest.raises(slimrt.InputError, match="length 9 .* exceeds the 8 available along axis 0"):
        s.run({"ids": np.zeros((1, 9), np.int64), "x": np.zeros((1, 10, 5), np.float32)})
    with pytest.raises(slimrt.InputError, match="exceeds"):
        m.run_reference({"ids": np.zeros((1, 9), np.int64), "x": np.zeros((1, 10, 5), np.float32)})


# ------------------------------------------------------------------ converter paths for dynamic lengths
class _TinyGPT(torch.nn.Module):
    """Learned positions cut to the input length, causal SDPA (needs a fixed length to build its mask)."""

    def __init__(self, causal, n_pos=40, d=16):
        super().__init__()
        torch.manual_seed(2)
        self.causal = causal
        self.pos = torch.nn.Parameter(torch.randn(1, n_pos, d))
        self.qkv = torch.nn.Linear(d, 3 * d)

    def forward(self, x):
        h = x + self.pos[:, :x.size(1)]
        b, s, d = h.shape
        q, k, v = self.qkv(h).view(b, s, 3, 2, d // 2).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return y.transpose(1, 2).reshape(b, s, d)


def test_learned_positions_sliced_to_the_input_length():
    mod = _TinyGPT(causal=False).eval()
    m = slimrt.from_torch(mod, torch.randn(2, 10, 16))
    assert m.inputs[0].shape == (None, None, 16)
    assert {"slice_like", "scaled_masked_softmax"} <= {n.op for n in m.nodes}
    rng = np.random.default_rng(0)
    for isa in ISAS:
        s = slimrt.Session(m, isa=isa, threads=2)
        for b, seq in ((1, 1), (3, 9), (2, 40)):
            x = rng.standard_normal((b, seq, 16)).astype(np.float32)
            with torch.no_grad():
                want = mod(torch.from_numpy(x)).numpy()
            assert _rel(s.run(x)[0], want) <= RTOL, (isa, b, seq)
    with pytest.raises(slimrt.InputError, match="pos.*length 41 .*exceeds the 40"):
        slimrt.Session(m, threads=1).run(np.zeros((1, 41, 16), np.float32))


def test_causal_attention_keeps_a_fixed_length():
    mod = _TinyGPT(causal=True).eval()
    x = torch.randn(2, 12, 16)
    with pytest.warns(UserWarning, match="sequence dimension stays fixed"):
        m = slimrt.from_torch(mod, x)
    assert m.inputs[0].shape == (None, 12, 16)
    assert "scaled_masked_softmax" in {n.op for n in m.nodes}  # the causal mask is fused too
    with torch.no_grad():
        want = mod(x).numpy()
    assert _rel(slimrt.Session(m, threads=2).run(x.numpy())[0], want) <= RTOL
    with pytest.raises(slimrt.UnsupportedError, match="dynamic sequence length"):
        slimrt.from_torch(mod, x, dynamic_seq=True)


class _CutLike(torch.nn.Module):
    def forward(self, x, ids):
        return x[:, :ids.size(1)] * 2.0


def test_slice_of_a_computed_tensor_to_another_inputs_length():
    mod = _CutLike()
    m = slimrt.from_torch(mod, (torch.randn(2, 20, 3), torch.zeros(2, 6, dtype=torch.int64)))
    assert "slice_like" in {n.op for n in m.nodes}
    x = np.random.default_rng(1).standard_normal((3, 20, 3)).astype(np.float32)
    for seq in (1, 13, 20):
        ids = np.zeros((3, seq), np.int64)
        np.testing.assert_array_equal(slimrt.Session(m, threads=1).run([x, ids])[0], x[:, :seq] * 2)

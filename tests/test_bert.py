"""BERT-class encoders imported from PyTorch (slimrt.from_torch), run natively, and compressed.

Parity: max|y_slim - y_torch| / max|y_torch| <= 1e-4 (fp32) on random ids with padding masks, at two
sequence lengths and two batch sizes, for every ISA this CPU supports. The sequence length is static
(one conversion per length, see slimrt.frontends.torch); the batch stays dynamic.
Compression: cosine similarity of masked-mean sentence embeddings vs fp32 on 20 English sentences.
"""
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import slimrt  # noqa: E402
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


@pytest.mark.parametrize("seq", [7, 16])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder(seq, masked, norm_first):
    mod = _Enc(norm_first=norm_first, act="gelu" if norm_first else "relu").eval()
    rng = np.random.default_rng(seq)
    ex = [torch.randn(2, seq, 64)] + ([torch.from_numpy(_pad_mask(rng, 2, seq))] if masked else [])
    m = slimrt.from_torch(mod, tuple(ex))
    assert m.inputs[0].shape == (None, seq, 64)
    for isa in ISAS:
        s = slimrt.Session(m, isa=isa, threads=2)
        for b in (1, 3):
            feeds = [rng.standard_normal((b, seq, 64)).astype(np.float32)]
            if masked:
                feeds.append(_pad_mask(rng, b, seq))
            with torch.no_grad():
                want = mod(*[torch.from_numpy(f) for f in feeds]).numpy()
            got = s.run({i.name: f for i, f in zip(m.inputs, feeds)})[0]
            assert got.shape == want.shape
            assert _rel(got, want) <= RTOL, (isa, b)


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


@pytest.mark.parametrize("seq", [9, 32])
def test_bert_matches_torch(bert, seq):
    rng = np.random.default_rng(seq)
    ex = _bert_inputs(rng, 2, seq)
    m = slimrt.from_torch(bert, tuple(torch.from_numpy(a) for a in ex))
    assert [i.name for i in m.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert m.outputs == ["last_hidden_state", "pooler_output", "mean_pooled"]
    assert all(i.shape == (None, seq) for i in m.inputs)
    assert not bert.training
    for isa in ISAS:
        s = slimrt.Session(m, isa=isa, threads=2)
        for b in (1, 4):
            ids, am, tt = _bert_inputs(rng, b, seq)
            with torch.no_grad():
                o = bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(am),
                         token_type_ids=torch.from_numpy(tt))
            hs, pooled = o.last_hidden_state.numpy(), o.pooler_output.numpy()
            mean = slimrt.frontends.torch.masked_mean_pool(hs, am)
            got = s.run({"input_ids": ids, "attention_mask": am, "token_type_ids": tt})
            for g, w in zip(got, (hs, pooled, mean)):
                assert g.shape == w.shape
                assert _rel(g, w) <= RTOL, (isa, b)
            np.testing.assert_allclose(slimrt.frontends.torch.cls_pool(got[0]), hs[:, 0], rtol=0, atol=1e-4)


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


def test_bert_rejects_non_binary_mask(bert):
    ids, am, tt = _bert_inputs(np.random.default_rng(0), 2, 8)
    m = slimrt.from_torch(bert, tuple(torch.from_numpy(a) for a in (ids, am, tt)))
    am[0, 0] = 2
    with pytest.raises(Exception):
        slimrt.Session(m, threads=2).run({"input_ids": ids, "attention_mask": am, "token_type_ids": tt})


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
                           ("share16", dict(share=16, share_mode="per_channel"), 0.97)):
        cm = m.compress(**kw)
        got = slimrt.Session(cm, threads=2).run(feeds)
        cos_mean = _cos(got[2], ref[2])
        cos_pool = _cos(got[1], ref[1])
        results[tag] = (float(cos_mean.min()), float(cos_mean.mean()), float(cos_pool.min()))
        print(f"{tag}: mean-pooled cosine min {cos_mean.min():.5f} mean {cos_mean.mean():.5f}; "
              f"pooler cosine min {cos_pool.min():.5f}")
        assert cos_mean.min() >= floor, (tag, results[tag])
        assert cos_pool.min() >= floor, (tag, results[tag])

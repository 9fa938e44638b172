"""MiniLM-L6-shaped BERT encoder (6 layers, hidden 384, 12 heads, ffn 1536), seeded: slimrt vs peers.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_bert.py \
        --benchmark-only --benchmark-group-by=group --benchmark-columns=median,min,rounds

Engines per group ``bert <batch>x<seq>``, all pinned to 2 threads: slimrt fp32 (``slimrt``), slimrt
int8 weights (``slimrt-int8``, ``m.compress(quant="int8")``), ONNX Runtime fp32 and dynamic-int8
(``torch.onnx.export`` + ``quantize_dynamic``), torch eager. Shapes: batch 1 x seq 128 and batch
SLIMRT_BENCH_BERT_BIG (default 8) x seq 128. Inputs: random ids with padded rows.
"""
import os
import tempfile
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import slimrt  # noqa: E402

THREADS = 2
SEQ = 128
BIG = int(os.environ.get("SLIMRT_BENCH_BERT_BIG", "8"))
torch.set_num_threads(THREADS)


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                  intermediate_size=1536, attn_implementation="eager")
    return transformers.BertModel(cfg).eval()


def _inputs(b):
    rng = np.random.default_rng(b)
    ids = rng.integers(0, 30522, (b, SEQ)).astype(np.int64)
    am = np.ones((b, SEQ), np.int64)
    am[-1, SEQ // 2:] = 0
    return ids, am, np.zeros_like(ids)


_CACHE = {}


def _engine(name):
    if name in _CACHE:
        return _CACHE[name]
    bert = _bert()
    ex = tuple(torch.from_numpy(a) for a in _inputs(2))
    if name in ("slimrt", "slimrt-int8"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = slimrt.from_torch(bert, ex)
        if name == "slimrt-int8":
            m = m.compress(quant="int8")
        s = slimrt.Session(m, threads=THREADS)
        fn = lambda f: s.run(f)  # noqa: E731
    elif name == "torch":
        def fn(f):
            with torch.no_grad():
                return bert(**{k: torch.from_numpy(v) for k, v in f.items()})
    else:
        import onnxruntime as ort

        d = tempfile.mkdtemp()
        path = os.path.join(d, "bert.onnx")
        class _Kw(torch.nn.Module):  # transformers 5 BertModel.forward takes these by keyword
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids):
                o = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
                return o.last_hidden_state, o.pooler_output

        torch.onnx.export(_Kw(bert).eval(), ex, path, input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state", "pooler_output"], dynamo=False, opset_version=17,
                          dynamic_axes={k: {0: "b"} for k in ("input_ids", "attention_mask", "token_type_ids")})
        if name == "ort-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            q = os.path.join(d, "bert_int8.onnx")
            quantize_dynamic(path, q, weight_type=QuantType.QInt8)
            path = q
        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        fn = lambda f: sess.run(None, f)  # noqa: E731
    _CACHE[name] = fn
    return fn


@pytest.mark.parametrize("engine", ["slimrt", "slimrt-int8", "ort", "ort-int8", "torch"])
@pytest.mark.parametrize("batch", [1, BIG])
def test_bert(benchmark, batch, engine):
    ids, am, tt = _inputs(batch)
    feeds = {"input_ids": ids, "attention_mask": am, "token_type_ids": tt}
    fn = _engine(engine)
    fn(feeds)
    benchmark.group = f"bert {batch}x{SEQ}"
    benchmark.extra_info.update(engine=engine, flops=2 * batch * SEQ * 6 * (4 * 384 * 384 + 2 * 384 * 1536
                                                                            + 2 * SEQ * 384))
    benchmark.pedantic(fn, args=(feeds,), rounds=5 if batch > 1 else 15, warmup_rounds=1)

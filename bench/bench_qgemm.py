"""Speed of the int8 dense layer (dynamic activation quantization) against its peers, in the same run.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_qgemm.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=min,median,rounds

Workload: y[M, N] = a[M, K] @ w[N, K].T (a Linear without bias), M in {1, 64, 256}, K, N in {1024, 4096}, plus
the Linear layers of a MiniLM-L6 BERT (BERT_SHAPES: M = 128 and 4096 rows, (K, N) = (384, 384), (384, 1152),
(384, 1536), (1536, 384); SLIMRT_BENCH_QGEMM_SET=bert runs only those, =square only the others);
float32 in, float32 out; every engine quantizes the activations dynamically inside the timed call.
Engines (all pinned to SLIMRT_BENCH_THREADS threads, default 2; inputs/outputs preallocated, packing untimed):
  slimrt        q8_pack(wq).run_dynamic (int8 per-channel weights, u8 per-row activations), active ISA
  fp32_sgemm    slimrt's own fp32 PackedSgemm.run on the same shape (the ">= 2.5x" target)
  onnxruntime   MatMul graph quantized with onnxruntime.quantization.quantize_dynamic (QInt8 weights,
                DynamicQuantizeLinear + MatMulInteger), intra_op_num_threads = threads
  torch         torch.ao.nn.quantized.dynamic.Linear (quantize_dynamic of nn.Linear, fbgemm/x86 backend),
                torch.set_num_threads(threads)
Group "<shape>/avx2" repeats slimrt with isa="avx2" against fp32_sgemm (the ">= 1.5x" target).
bench/conftest.py prints per group the slimrt/peer ratios (peer time / slimrt time, > 1: slimrt faster).
SLIMRT_BENCH_QUICK=1 keeps only K == N.

Groups "conv/<layer>" (-k conv): static int8 convolution layers of ResNet-18 / MobileNetV2 as one-node
models (slimrt qconv2d vs slimrt fp32 conv2d vs ONNX Runtime static QDQ Conv), see the section at the end.
"""
import os
import tempfile

THREADS = int(os.environ.get("SLIMRT_BENCH_THREADS", "2"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from slimrt._native import core  # noqa: E402

K = core.kernels
ISAS = core.cpu_info()["supported_isas"]
KN = [(k, n) for k in (1024, 4096) for n in (1024, 4096)]
if os.environ.get("SLIMRT_BENCH_QUICK"):
    KN = [(k, n) for (k, n) in KN if k == n]
SHAPES = [(m, k, n) for m in (1, 64, 256) for (k, n) in KN]
# The Linear layers of a MiniLM-L6-shaped BERT encoder (hidden 384, ffn 1536) at batch 1 and 32 x seq 128:
# q/k/v and attention output (384 -> 384), the three projections as one (384 -> 1152), ffn up / down.
BERT_SHAPES = [(m, k, n) for m in (128, 4096) for (k, n) in ((384, 384), (384, 1152), (384, 1536), (1536, 384))]
# SLIMRT_BENCH_QGEMM_SET: "bert" runs only BERT_SHAPES, "square" only the shapes above, default both.
_SET = os.environ.get("SLIMRT_BENCH_QGEMM_SET", "")
SHAPES = (SHAPES if _SET != "bert" else []) + (BERT_SHAPES if _SET != "square" else [])


def _ids(s):
    return "M%d_K%d_N%d" % s


@pytest.fixture(scope="module")
def operands():
    cache = {}

    def get(m, k, n):
        if (m, k, n) not in cache:
            rng = np.random.default_rng(m * 7 + k * 3 + n)
            a = rng.standard_normal((m, k), dtype=np.float32)
            w = rng.standard_normal((n, k), dtype=np.float32)
            ws = (np.abs(w).max(axis=1) / 127).astype(np.float32)
            wq = np.clip(np.rint(w / ws[:, None]), -127, 127).astype(np.int8)
            cache.clear()  # one shape's operands alive at a time
            cache[(m, k, n)] = (a, w, wq, ws)
        return cache[(m, k, n)]

    return get


def _info(benchmark, engine, m, k, n):
    benchmark.group = _ids((m, k, n))
    benchmark.extra_info.update(engine=engine, flops=2 * m * k * n, threads=THREADS)


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_slimrt_q8(benchmark, operands, shape):
    m, k, n = shape
    a, _, wq, ws = operands(m, k, n)
    p = K.q8_pack(wq)
    out = np.empty((m, n), np.float32)
    _info(benchmark, "slimrt", m, k, n)
    benchmark.extra_info["isa"] = p.isa
    benchmark(p.run_dynamic, a, ws, threads=THREADS, out=out)


@pytest.mark.skipif("avx2" not in ISAS, reason="no AVX2")
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_slimrt_q8_avx2(benchmark, operands, shape):
    m, k, n = shape
    a, _, wq, ws = operands(m, k, n)
    p = K.q8_pack(wq, isa="avx2")
    out = np.empty((m, n), np.float32)
    _info(benchmark, "slimrt", m, k, n)
    benchmark.group += "/avx2"
    benchmark(p.run_dynamic, a, ws, threads=THREADS, out=out)


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_fp32_sgemm(benchmark, operands, shape):
    m, k, n = shape
    a, w, _, _ = operands(m, k, n)
    p = K.PackedSgemm(w)
    out = np.empty((m, n), np.float32)
    _info(benchmark, "fp32_sgemm", m, k, n)
    benchmark(p.run, a, threads=THREADS, out=out)


@pytest.mark.skipif("avx2" not in ISAS, reason="no AVX2")
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_fp32_sgemm_avx2_group(benchmark, operands, shape):
    m, k, n = shape
    a, w, _, _ = operands(m, k, n)
    p = K.PackedSgemm(w)  # the best fp32 kernel: the int8 AVX2 path must beat it by 1.5x
    out = np.empty((m, n), np.float32)
    _info(benchmark, "fp32_sgemm", m, k, n)
    benchmark.group += "/avx2"
    benchmark(p.run, a, threads=THREADS, out=out)


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_onnxruntime_dynamic(benchmark, operands, shape):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    m, k, n = shape
    a, w, _, _ = operands(m, k, n)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wt"], ["y"])], "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        initializer=[numpy_helper.from_array(np.ascontiguousarray(w.T), "wt")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f32.onnx"), os.path.join(d, "q8.onnx")
        onnx.save(model, src)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(dst, so, providers=["CPUExecutionProvider"])
    feeds = {"x": a}
    _info(benchmark, "onnxruntime", m, k, n)
    benchmark(sess.run, None, feeds)


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_torch_dynamic(benchmark, operands, shape):
    torch = pytest.importorskip("torch")
    m, k, n = shape
    a, w, _, _ = operands(m, k, n)
    torch.set_num_threads(THREADS)
    lin = torch.nn.Linear(k, n, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    qlin = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
    assert isinstance(qlin[0], torch.ao.nn.quantized.dynamic.Linear)
    x = torch.from_numpy(a)
    _info(benchmark, "torch", m, k, n)

    def run():
        with torch.inference_mode():
            return qlin(x)

    benchmark(run)


# ---- static int8 convolution layers (one-node models through Session) --------------------------
# Group "conv/<layer>": slimrt one `qconv2d` node (u8 NHWC in, u8 out, requantization and ReLU in the
# epilogue) against slimrt's own fp32 `conv2d` node (engine fp32_conv, the ">= 2x" yardstick) and ONNX
# Runtime's static QDQ Conv (quantize_static, per-channel QInt8 weights, QUInt8 activations; float NCHW in
# and out, so its timing includes one QuantizeLinear and one DequantizeLinear). Depthwise layers
# (groups = C) run the int8 depthwise kernel. Batch SLIMRT_BENCH_CONV_BATCH (default 1).
CONV_BATCH = int(os.environ.get("SLIMRT_BENCH_CONV_BATCH", "1"))
CONV_LAYERS = {  # name: (H, W, C, O, K, stride, pad, groups)
    "r18_3x3_56x56x64": (56, 56, 64, 64, 3, 1, 1, 1),
    "r18_3x3_28x28x128": (28, 28, 128, 128, 3, 1, 1, 1),
    "r18_3x3_14x14x256": (14, 14, 256, 256, 3, 1, 1, 1),
    "r18_3x3_7x7x512": (7, 7, 512, 512, 3, 1, 1, 1),
    "r18_1x1s2_56x56_64to128": (56, 56, 64, 128, 1, 2, 0, 1),
    "r18_stem_7x7s2_112x112x3": (112, 112, 3, 64, 7, 2, 3, 1),
    "mbv2_1x1_56x56_24to144": (56, 56, 24, 144, 1, 1, 0, 1),
    "mbv2_dw_112x112x32": (112, 112, 32, 32, 3, 1, 1, 32),
    "mbv2_dw_56x56x144": (56, 56, 144, 144, 3, 1, 1, 144),
    "mbv2_dw_14x14x576": (14, 14, 576, 576, 3, 1, 1, 576),
}


def _conv_operands(name):
    h, w, c, o, k, s, p, g = CONV_LAYERS[name]
    rng = np.random.default_rng(len(name))
    wf = (rng.standard_normal((o, k, k, c // g)) * 0.1).astype(np.float32)
    bias = (rng.standard_normal(o) * 0.1).astype(np.float32)
    x = rng.standard_normal((CONV_BATCH, h, w, c)).astype(np.float32)
    oh = (h + 2 * p - k) // s + 1
    flops = 2 * CONV_BATCH * oh * oh * o * k * k * (c // g)
    return (h, w, c, o, k, s, p, g), wf, bias, x, flops


def _conv_session(name, quant):
    from slimrt.formats import QInt8
    from slimrt.ir import Model

    import slimrt
    (h, w, c, o, k, s, p, g), wf, bias, x, flops = _conv_operands(name)
    m = Model()
    attrs = {"strides": [s, s], "pads": [p] * 4, "groups": g, "act": "relu"}
    if quant:
        flat = wf.reshape(o, -1)
        ws = (np.abs(flat).max(1) / 127).astype(np.float32)
        wq = np.clip(np.rint(wf / ws[:, None, None, None]), -127, 127).astype(np.int8)
        m.add_input("x", (None, h, w, c), "uint8")
        wname = m.add_constant("w", QInt8(wq, ws, axis=0))
        attrs.update(x_scale=0.02, x_zero=128, out_scale=0.05, out_zero=0)
        op, feed = "qconv2d", np.clip(np.rint(x / 0.02) + 128, 0, 255).astype(np.uint8)
    else:
        m.add_input("x", (None, h, w, c), "float32")
        wname = m.add_constant("w", wf)
        op, feed = "conv2d", x
    m.outputs = [m.add_node(op, ["x", wname, m.add_constant("b", bias)], attrs)]
    return slimrt.Session(m, threads=THREADS), {"x": feed}, flops


def _conv_info(benchmark, engine, name, flops):
    benchmark.group = "conv/" + name
    benchmark.extra_info.update(engine=engine, flops=flops, threads=THREADS)


@pytest.mark.parametrize("name", list(CONV_LAYERS))
def test_conv_slimrt_q8_static(benchmark, name):
    sess, feeds, flops = _conv_session(name, True)
    _conv_info(benchmark, "slimrt", name, flops)
    benchmark.extra_info["kernel"] = sess.kernels()[0][2]
    benchmark(sess.run, feeds)


@pytest.mark.parametrize("name", list(CONV_LAYERS))
def test_conv_slimrt_fp32(benchmark, name):
    sess, feeds, flops = _conv_session(name, False)
    _conv_info(benchmark, "fp32_conv", name, flops)
    benchmark(sess.run, feeds)


@pytest.mark.parametrize("name", list(CONV_LAYERS))
def test_conv_onnxruntime_qdq(benchmark, name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    (h, w, c, o, k, s, p, g), wf, bias, x, flops = _conv_operands(name)
    xn = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    node = helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[s, s], pads=[p] * 4, group=g,
                            kernel_shape=[k, k])
    relu = helper.make_node("Relu", ["c"], ["y"])
    graph = helper.make_graph(
        [node, relu], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ascontiguousarray(wf.transpose(0, 3, 1, 2)), "w"),
         numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    src, dst = str(tmp_path / "conv.onnx"), str(tmp_path / "conv_qdq.onnx")
    onnx.save(model, src)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": xn}])

        def get_next(self):
            return next(self.it, None)

    quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(dst, so, providers=["CPUExecutionProvider"])
    _conv_info(benchmark, "onnxruntime_qdq", name, flops)
    benchmark(sess.run, None, {"x": xn})

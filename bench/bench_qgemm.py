"""Speed of the int8 dense layer (dynamic activation quantization) against its peers, in the same run.

    SLIMRT_DEV_CORE=... PYTHONPATH=python python3 -m pytest bench/bench_qgemm.py --benchmark-only \
        --benchmark-group-by=group --benchmark-columns=min,median,rounds

Workload: y[M, N] = a[M, K] @ w[N, K].T (a Linear without bias), M in {1, 64, 256}, K, N in {1024, 4096};
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

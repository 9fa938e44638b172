"""End-to-end benchmark models (seeded weights) and the engines that run them.

Models (``MODELS[name]() -> Spec``), all NCHW float32 in, eval mode:

* ``mlp``          MLP 784-300-100-10 on 1x28x28 (flatten, ReLU)
* ``lenet5``       LeNet-5 on 1x28x28 (tanh, average pooling)
* ``resnet18``     ResNet-18 layout (7x7/2 stem, max-pool, 4 stages x 2 basic blocks, 64..512 ch) at 3x112x112
* ``mobilenetv2``  MobileNetV2 (width 1.0, 17 inverted residual blocks, 1280-ch head) at 3x224x224
* ``xception``     Xception-style: entry flow (3 down-sampling separable blocks), 4 middle blocks, exit flow,
                   at 3x128x128, widths 32..512 (the original's 728 middle width scaled to 384)
* ``transformer``  ``nn.TransformerEncoderLayer(384, 12 heads, ffn 1536, batch_first=True)``, seq 128

Engines (``make_runner(engine, spec, threads) -> fn(x) -> np.ndarray``):

* ``slimrt_fp32``   ``from_torch(...).optimize()`` on ``slimrt.Session(threads=T)``
* ``slimrt_int8``   ``.compress(quant="int8")`` (int8 per-channel weights) then ``.optimize()``
* ``slimrt_int8s``  static int8: ``.compress(quant="int8", calib=<the 8 x 4 samples ORT's QDQ calibration
                    reads>)`` (min-max) then ``.optimize()``, whose ``int8_chain`` pass keeps activations uint8
                    between layers (requantized in the kernel epilogues)
* ``ort_fp32``      ONNX Runtime, model exported by ``torch.onnx.export(dynamo=False)``, ORT_ENABLE_ALL
* ``ort_fp32_spin`` the same with intra-op spinning left on (ORT's default; only differs at T > 1)
* ``ort_int8_dyn``  ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, QInt8)
* ``ort_int8_qdq``  ``quantize_static`` QDQ format, per-channel int8 weights, 8 seeded calibration batches
* ``torch_fp32``    PyTorch eager under ``inference_mode``
* ``torch_dynq``    ``torch.ao.quantization.quantize_dynamic({nn.Linear}, qint8)`` (convolutions stay fp32)

Any slimrt engine with ``_unfused`` appended (``slimrt_fp32_unfused``, not in ``ENGINES``) runs the same
model with ``Session(fuse=False)``: its layers one node at a time, for an interleaved fusion A/B, e.g.
``python3 bench/interleaved.py --engines slimrt_fp32,slimrt_fp32_unfused --models mobilenetv2 ...``.

Every ORT session: ``intra_op_num_threads=T``, ``inter_op_num_threads=1``, sequential execution and
(except ``ort_fp32_spin``) ``session.intra_op.allow_spinning=0``. torch: ``torch.set_num_threads(T)``
right before each call (the process-wide setting is shared by all torch engines).

Expensive preparation (conversion, ONNX export, quantisation) is cached per model in ``WORKDIR``
(``SLIMRT_BENCH_DIR`` or a temporary directory) and in memory.
"""
from __future__ import annotations

import dataclasses
import io
import math
import os
import tempfile
import warnings
from contextlib import redirect_stdout, redirect_stderr

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ENGINES = ["slimrt_fp32", "slimrt_int8", "slimrt_int8s", "ort_fp32", "ort_fp32_spin", "ort_int8_dyn", "ort_int8_qdq",
           "torch_fp32", "torch_dynq"]


# ------------------------------------------------------------------------------------------ model builders
def _randomize(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics and LayerNorm affine, so a wrong mapping shows; eval mode."""
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
    return module.eval()


def mlp_module():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 10))


def lenet5_module():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, first stride s): the paper's Table 2
    CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1)]

    def __init__(self, classes=1000):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())]
        cin = 32
        for t, c, n, s in self.CFG:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(nn.Sequential(nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean([2, 3]))


class SeparableConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.pw(self.dw(x)))


class XceptionDown(nn.Module):
    """relu-sep-relu-sep-maxpool(3,2) + 1x1/2 conv skip (the entry/exit flow block)."""

    def __init__(self, cin, cout, first_relu=True):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU() if first_relu else nn.Identity(), SeparableConv(cin, cout), nn.ReLU(),
                                  SeparableConv(cout, cout), nn.MaxPool2d(3, 2, 1))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.body(x) + self.skip(x)


class XceptionMiddle(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), SeparableConv(c, c), nn.ReLU(), SeparableConv(c, c), nn.ReLU(),
                                  SeparableConv(c, c))

    def forward(self, x):
        return x + self.body(x)


class Xception(nn.Module):
    def __init__(self, classes=1000, width=384, middle=4):
        super().__init__()
        self.entry = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            XceptionDown(64, 128, first_relu=False), XceptionDown(128, 256), XceptionDown(256, width))
        self.middle = nn.Sequential(*[XceptionMiddle(width) for _ in range(middle)])
        self.exit = nn.Sequential(XceptionDown(width, 512), SeparableConv(512, 768), nn.ReLU())
        self.fc = nn.Linear(768, classes)

    def forward(self, x):
        x = self.exit(self.middle(self.entry(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def transformer_module():
    return nn.TransformerEncoderLayer(384, 12, dim_feedforward=1536, dropout=0.1, batch_first=True)


class ExplicitEncoderLayer(nn.Module):
    """The same computation as a post-norm ``nn.TransformerEncoderLayer`` (ReLU FFN, eval mode), spelt with
    linear / matmul / softmax instead of ``scaled_dot_product_attention``, sharing the layer's parameters.
    Used for slimrt only while its importer cannot convert ``aten::scaled_dot_product_attention``."""

    def __init__(self, layer: nn.TransformerEncoderLayer):
        super().__init__()
        assert layer.self_attn.batch_first and not layer.norm_first and layer.activation_relu_or_gelu == 1
        a = layer.self_attn
        self.heads = a.num_heads
        self.qkv = nn.Linear(a.embed_dim, 3 * a.embed_dim)
        self.qkv.weight, self.qkv.bias = a.in_proj_weight, a.in_proj_bias
        self.out = a.out_proj
        self.norm1, self.norm2, self.linear1, self.linear2 = layer.norm1, layer.norm2, layer.linear1, layer.linear2

    def forward(self, x):
        n, t, d = x.shape
        dh = d // self.heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.reshape(n, t, self.heads, dh).transpose(1, 2)
        k = k.reshape(n, t, self.heads, dh).transpose(1, 2)
        v = v.reshape(n, t, self.heads, dh).transpose(1, 2)
        att = torch.softmax((q * (1.0 / math.sqrt(dh))) @ k.transpose(-2, -1), dim=-1)
        a = (att @ v).transpose(1, 2).reshape(n, t, d)
        x = self.norm1(x + self.out(a))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


@dataclasses.dataclass
class Spec:
    name: str
    module: nn.Module
    shape: tuple          # one sample, without the batch dimension
    batch_big: int        # batch of the throughput measurement

    def input(self, batch: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal((batch,) + self.shape).astype(np.float32)


def _build(name, ctor, shape, batch_big, seed=0):
    def make():
        torch.manual_seed(seed)
        return Spec(name, _randomize(ctor(), seed), shape, batch_big)
    return make


BATCH_BIG = int(os.environ.get("SLIMRT_BENCH_BATCH", "64"))
MODELS = {
    "mlp": _build("mlp", mlp_module, (1, 28, 28), BATCH_BIG),
    "lenet5": _build("lenet5", lenet5_module, (1, 28, 28), BATCH_BIG),
    "resnet18": _build("resnet18", ResNet18, (3, 112, 112), BATCH_BIG),
    # 224x224 MobileNetV2: throughput at batch 16 (64 would take 4x as long for the same figure)
    "mobilenetv2": _build("mobilenetv2", MobileNetV2, (3, 224, 224), min(16, BATCH_BIG)),
    "xception": _build("xception", Xception, (3, 128, 128), BATCH_BIG),
    "transformer": _build("transformer", transformer_module, (128, 384), min(16, BATCH_BIG)),
}


def flops(spec: Spec) -> int:
    """Multiply-adds x 2 of the convolutions and linear layers (matmuls of attention included), per sample."""
    total = 0
    hooks = []

    def conv_hook(m, inp, out):
        nonlocal total
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
        total += 2 * out.numel() // out.shape[0] * k

    def lin_hook(m, inp, out):
        nonlocal total
        total += 2 * out.numel() // out.shape[0] * m.in_features

    for m in spec.module.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    if isinstance(spec.module, nn.TransformerEncoderLayer):
        s, d = spec.shape
        total += 2 * 2 * s * s * d + 2 * s * d * 3 * d + 2 * s * d * d  # QK^T, AV, in_proj, out_proj
    with torch.inference_mode():
        spec.module(torch.from_numpy(spec.input(1)))
    for h in hooks:
        h.remove()
    return total


# ------------------------------------------------------------------------------------------ preparation cache
WORKDIR = os.environ.get("SLIMRT_BENCH_DIR") or tempfile.mkdtemp(prefix="slimrt_e2e_")
os.makedirs(WORKDIR, exist_ok=True)
_CACHE: dict = {}
NOTES: dict = {}  # model -> why slimrt ran a rewritten module


def note_for(model: str, engine: str):
    """The note recorded for this model and engine (keys "model/engine-prefix"), or None (last one wins)."""
    note = None
    for k, v in NOTES.items():
        m, e = k.split("/", 1)
        if m == model and engine.startswith(e):
            note = v
    return note


def spec(name: str) -> Spec:
    key = ("spec", name)
    if key not in _CACHE:
        _CACHE[key] = MODELS[name]()
    return _CACHE[key]


def _cached(key, fn):
    if key not in _CACHE:
        _CACHE[key] = fn()
    return _CACHE[key]


def slimrt_model(name: str, variant: str):
    """The converted model, optimized; ``variant`` "fp32", "int8" (dynamic activations) or "int8s" (static)."""
    import slimrt

    def make():
        s = spec(name)
        example = (torch.from_numpy(s.input(1)),)
        try:
            m = slimrt.from_torch(s.module, example)
        except slimrt.UnsupportedError as e:
            if not isinstance(s.module, nn.TransformerEncoderLayer):
                raise
            NOTES[f"{name}/slimrt"] = f"ran ExplicitEncoderLayer (same weights): {e}"
            m = slimrt.from_torch(ExplicitEncoderLayer(s.module).eval(), example)
        if variant == "int8":
            m = m.compress(quant="int8")
        elif variant == "int8s":
            calib = np.concatenate([b["x"] for b in _Calib(s)._batches])
            m = m.compress(quant="int8", calib=calib, calib_method="minmax")
        return m.optimize()
    return _cached(("slimrt", name, variant), make)


def portable_module(name: str, engine: str) -> nn.Module:
    """The module an exporter / quantiser gets: for the transformer the ExplicitEncoderLayer (same weights),
    because torch 2.13's TorchScript ONNX exporter fails on the layer's scaled_dot_product_attention
    ("argument 'is_causal' must be bool, not Tensor") and quantize_dynamic breaks its fast path
    ("'function' object has no attribute 'device'")."""
    m = spec(name).module
    if isinstance(m, nn.TransformerEncoderLayer):
        NOTES[f"{name}/{engine}"] = "ran ExplicitEncoderLayer (same weights, same math)"
        return _cached(("explicit", name), lambda: ExplicitEncoderLayer(m).eval())
    return m


def onnx_path(name: str, variant: str = "fp32") -> str:
    """fp32 export (dynamic batch), or its dynamic / static-QDQ int8 quantisation."""
    def make():
        s = spec(name)
        fp32 = os.path.join(WORKDIR, f"{name}.onnx")
        module = portable_module(name, "ort")  # (also records the note when the export is cached)
        if not os.path.exists(fp32):
            with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (torch.from_numpy(s.input(1)),), fp32, dynamo=False,
                                  input_names=["x"], output_names=["y"], opset_version=17,
                                  dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
        if variant == "fp32":
            return fp32
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre = os.path.join(WORKDIR, f"{name}.pre.onnx")
        if not os.path.exists(pre):
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                quant_pre_process(fp32, pre, skip_symbolic_shape=True)
        out = os.path.join(WORKDIR, f"{name}.{variant}.onnx")
        if os.path.exists(out):
            return out
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            if variant == "int8_dyn":
                quantize_dynamic(pre, out, weight_type=QuantType.QInt8)
            elif variant == "int8_qdq":
                quantize_static(pre, out, _Calib(s), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            else:
                raise ValueError(variant)
        return out
    return _cached(("onnx", name, variant), make)


class _Calib:
    """CalibrationDataReader: 8 seeded batches of 4 samples (different seeds from the benchmark inputs)."""

    def __init__(self, s: Spec):
        self._batches = [{"x": s.input(4, seed=100 + i)} for i in range(8)]
        self._it = iter(self._batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - newer ORT calls it between passes
        pass


def ort_session(path: str, threads: int, spinning: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def torch_dynq(name: str):
    def make():
        m = portable_module(name, "torch_dynq")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)
    return _cached(("torch_dynq", name), make)


def make_runner(engine: str, name: str, threads: int):
    """fn(x: np.ndarray) -> np.ndarray running ``name`` on ``engine`` with ``threads`` threads."""
    if engine.startswith("slimrt"):
        import slimrt

        # Host-tuned plans (the kernel variant of each layer timed on this CPU at the first run of a
        # shape, as `slimrt tune` stores them in the file); SLIMRT_BENCH_TUNE=0 for the untuned default.
        tune = os.environ.get("SLIMRT_BENCH_TUNE", "1") != "0"
        sess = slimrt.Session(slimrt_model(name, engine.split("_")[1]), threads=threads, tune=tune,
                              fuse=not engine.endswith("_unfused"))
        return lambda x: sess.run(x)[0]
    if engine.startswith("ort"):
        variant = {"ort_fp32": "fp32", "ort_fp32_spin": "fp32", "ort_int8_dyn": "int8_dyn",
                   "ort_int8_qdq": "int8_qdq"}[engine]
        sess = ort_session(onnx_path(name, variant), threads, spinning=engine == "ort_fp32_spin")
        return lambda x: sess.run(None, {"x": x})[0]
    if engine.startswith("torch"):
        module = spec(name).module if engine == "torch_fp32" else torch_dynq(name)

        def run(x):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()
        return run
    raise ValueError(engine)


# Tolerances of the correctness check against torch fp32 (max |got - want| / max |want|).
TOL = {"slimrt_fp32": 1e-3, "ort_fp32": 1e-3, "ort_fp32_spin": 1e-3, "torch_fp32": 1e-3,
       "slimrt_int8": 0.1, "slimrt_int8s": 0.1, "ort_int8_dyn": 0.1, "ort_int8_qdq": 0.1, "torch_dynq": 0.1}
TOL.update({e + "_unfused": TOL[e] for e in ("slimrt_fp32", "slimrt_int8", "slimrt_int8s")})


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"output shape {got.shape} != torch's {want.shape}")
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def reference(name: str, x: np.ndarray) -> np.ndarray:
    torch.set_num_threads(1)
    with torch.inference_mode():
        return spec(name).module(torch.from_numpy(x)).numpy()


if __name__ == "__main__":  # sizes and FLOPs of the models
    for n in MODELS:
        s = spec(n)
        params = sum(p.numel() for p in s.module.parameters())
        print(f"{n:12s} input {s.shape}  params {params / 1e6:6.2f} M  {flops(s) / 1e9:7.3f} GFLOP/sample  "
              f"throughput batch {s.batch_big}")

"""The slimrt graph IR: a model is a list of nodes over named values.

Pure Python and numpy. Frontends (keras.py, torch.py) build a ``Model``; passes
rewrite it; ``Model.save`` writes the ``.slim`` file the C++ runtime executes.

Conventions every op follows (the C++ runtime implements the same):

* activations are float32 unless stated; feature maps are **NHWC** (channels
  last). A converted PyTorch model keeps NCHW at its boundary with explicit
  ``transpose`` nodes.
* ``dense`` weights are ``[out, in]`` (one row per output channel); ``conv2d``
  weights are ``[O, KH, KW, C/groups]``.
* ``pads`` of conv/pool are ``[top, left, bottom, right]``.
* ``act`` attributes take one of ``ACTIVATIONS``; ``alpha`` is the slope of
  leaky_relu or the alpha of elu.

``OPS`` below is the schema: number of inputs and each attribute's type and
default. ``Model.validate`` checks a graph against it, and the C++ loader checks
the same rules (csrc/format/schema.cpp) on every file it loads.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import FormatError, InputError
from .formats import Tensor, as_tensor

ACTIVATIONS = ("none", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh",
               "silu", "hard_swish", "elu", "hard_sigmoid")

# attribute types
INT, FLOAT, STR, INTS, FLOATS = "int", "float", "str", "ints", "floats"

_ACT_ATTRS = {"act": (STR, "none"), "alpha": (FLOAT, 0.0)}
_Q_LAYER = {"x_scale": (FLOAT, 1.0), "x_zero": (INT, 0), "out_scale": (FLOAT, 0.0), "out_zero": (INT, 0),
            "residual": (INT, 0), "res_scale": (FLOAT, 1.0), "res_zero": (INT, 0)}

# op -> (min inputs, max inputs, {attr: (type, default)})
OPS: dict[str, tuple[int, int, dict[str, tuple[str, Any]]]] = {
    # y[..., n] = act(sum_k x[..., k] * w[n, k] + b[n] (+ r[..., n])); w [N, K] constant.
    # residual=1: the last input r (shape of y) is added before the activation (fused residual add).
    "dense": (2, 4, {"residual": (INT, 0), **_ACT_ATTRS}),
    # batched a @ b (numpy broadcasting over leading dims); trans_b: b is [..., N, K]
    "matmul": (2, 2, {"trans_b": (INT, 0), **_ACT_ATTRS}),
    # x NHWC, w [O, KH, KW, C/groups] (or 2-D [O, KH*KW*C/groups], e.g. CSR, with kernel=[KH, KW]), b [O]
    "conv2d": (2, 4, {"strides": (INTS, [1, 1]), "dilations": (INTS, [1, 1]),
                      "pads": (INTS, [0, 0, 0, 0]), "groups": (INT, 1), "kernel": (INTS, []), "residual": (INT, 0),
                      **_ACT_ATTRS}),
    # y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis; inputs x, gamma, beta, mean, var
    "batch_norm": (5, 5, {"epsilon": (FLOAT, 1e-3)}),
    # y = act(x)
    "activation": (1, 1, dict(_ACT_ATTRS)),
    # y = x >= 0 ? x : slope * x; slope broadcast against x (usually [C] over the last axis)
    "prelu": (2, 2, {}),
    "softmax": (1, 1, {"axis": (INT, -1)}),
    # NHWC pooling
    "max_pool": (1, 1, {"kernel": (INTS, [2, 2]), "strides": (INTS, [2, 2]),
                        "pads": (INTS, [0, 0, 0, 0]), "ceil_mode": (INT, 0)}),
    "avg_pool": (1, 1, {"kernel": (INTS, [2, 2]), "strides": (INTS, [2, 2]),
                        "pads": (INTS, [0, 0, 0, 0]), "ceil_mode": (INT, 0),
                        "count_include_pad": (INT, 1)}),
    # [N, H, W, C] -> [N, C] (keepdims: [N, 1, 1, C])
    "global_avg_pool": (1, 1, {"keepdims": (INT, 0)}),
    "global_max_pool": (1, 1, {"keepdims": (INT, 0)}),
    # mean / max over the given axes
    "reduce_mean": (1, 1, {"axes": (INTS, [-1]), "keepdims": (INT, 0)}),
    "reduce_max": (1, 1, {"axes": (INTS, [-1]), "keepdims": (INT, 0)}),
    # [d0 .. d_{axis-1}, prod(rest)]
    "flatten": (1, 1, {"axis": (INT, 1)}),
    # 0 copies the input's dim at that position, -1 is inferred
    "reshape": (1, 1, {"shape": (INTS, [-1])}),
    "transpose": (1, 1, {"perm": (INTS, [])}),
    "add": (2, 2, {}), "sub": (2, 2, {}), "mul": (2, 2, {}), "div": (2, 2, {}),
    "concat": (1, 64, {"axis": (INT, -1)}),
    # pads: [begin_0 .. begin_{r-1}, end_0 .. end_{r-1}]
    "pad": (1, 1, {"pads": (INTS, []), "value": (FLOAT, 0.0)}),
    # normalise over the last axis; inputs x, gamma, beta (optional)
    "layer_norm": (2, 3, {"epsilon": (FLOAT, 1e-5)}),
    # ids (int32/int64) -> table rows; table [V, D]
    "embedding": (2, 2, {}),
    # x[..., starts:ends:1] along axes (ends clipped)
    "slice": (1, 1, {"axes": (INTS, []), "starts": (INTS, []), "ends": (INTS, [])}),
    # ---- static int8 activation chains (optimize.int8_chain): a uint8 value q stands for
    # x = scale * (q - zero_point); each op carries the parameters of the u8 values it reads and writes.
    # q = clip(rint(x / scale) + zero_point, 0, 255)
    "quantize": (1, 1, {"scale": (FLOAT, 1.0), "zero_point": (INT, 0)}),
    # x = (q - zero_point) * scale
    "dequantize": (1, 1, {"scale": (FLOAT, 1.0), "zero_point": (INT, 0)}),
    # dense / conv2d on a uint8 input (x_scale, x_zero) with a QInt8 weight: y = act(x W^T + b + r), then
    # uint8 (out_scale > 0: requantized with out_scale, out_zero) or float32 (out_scale == 0); a uint8
    # residual r is read with (res_scale, res_zero), a float32 one as is
    "qdense": (2, 4, {**_Q_LAYER, **_ACT_ATTRS}),
    "qconv2d": (2, 4, {"strides": (INTS, [1, 1]), "dilations": (INTS, [1, 1]), "pads": (INTS, [0, 0, 0, 0]),
                       "groups": (INT, 1), **_Q_LAYER, **_ACT_ATTRS}),
    # max_pool on the codes of a uint8 value (same scale and zero point out; padding never wins)
    "qmax_pool": (1, 1, {"kernel": (INTS, [2, 2]), "strides": (INTS, [2, 2]),
                         "pads": (INTS, [0, 0, 0, 0]), "ceil_mode": (INT, 0)}),
    # mean over H, W of a uint8 value -> uint8 (out_scale > 0) or float32
    "qglobal_avg_pool": (1, 1, {"x_scale": (FLOAT, 1.0), "x_zero": (INT, 0), "out_scale": (FLOAT, 0.0),
                                "out_zero": (INT, 0), "keepdims": (INT, 0)}),
    # act(a + b) of two same-shaped uint8 values -> uint8 or float32 (act none / relu / relu6)
    "qadd": (2, 2, {"a_scale": (FLOAT, 1.0), "a_zero": (INT, 0), "b_scale": (FLOAT, 1.0), "b_zero": (INT, 0),
                    "out_scale": (FLOAT, 0.0), "out_zero": (INT, 0), **_ACT_ATTRS}),
    # uint8 -> uint8 activation through a 256-entry table (any activation)
    "qactivation": (1, 1, {"x_scale": (FLOAT, 1.0), "x_zero": (INT, 0), "out_scale": (FLOAT, 1.0),
                           "out_zero": (INT, 0), **_ACT_ATTRS}),
    # reshape whose sizes may come from other inputs' shapes: dims[j] > 0 literal, 0 = x's dim j, -1 inferred,
    # -2 = inputs[i].shape[d] for the next (i, d) pair of refs (i >= 1); inputs 1.. are read for their shapes only
    "reshape_dims": (2, 9, {"dims": (INTS, []), "refs": (INTS, [])}),
    # x[starts[i] : starts[i] + ref.shape[ref_axes[i]]] along axes[i]; a length beyond x's dim is an error
    "slice_like": (2, 2, {"axes": (INTS, []), "starts": (INTS, []), "ref_axes": (INTS, [])}),
    # softmax(x * scale + mask) over the last axis; mask (optional) ends in x's last dim and broadcasts to x
    "scaled_masked_softmax": (1, 2, {"scale": (FLOAT, 1.0)}),
    # multi-head attention on head-interleaved rows: q [B, Sq, H*D], k, v [B, Sk, H*D], mask (optional) broadcast
    # to [B, H, Sq, Sk]; y[b, i, h*D:(h+1)*D] = softmax_j(q_bh[i] . k_bh[j] * scale + mask[b, h, i, j]) @ v_bh
    "attention": (3, 4, {"heads": (INT, 1), "scale": (FLOAT, 1.0), "int8": (INT, 0)}),
}


@dataclass
class ValueInfo:
    """A graph input or output: name, dtype and shape (None = any size, e.g. the batch)."""

    name: str
    shape: tuple
    dtype: str = "float32"

    def __post_init__(self):
        self.shape = tuple(None if (d is None or int(d) < 0) else int(d) for d in self.shape)
        self.dtype = np.dtype(self.dtype).name


@dataclass
class Node:
    op: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    name: str = ""

    def attr(self, key):
        if key in self.attrs:
            return self.attrs[key]
        return OPS[self.op][2][key][1]


class Model:
    """A graph of nodes over named values, with constant tensors in any storage format."""

    def __init__(self, inputs=(), outputs=(), nodes=(), constants=None, metadata=None):
        self.inputs: list[ValueInfo] = [i if isinstance(i, ValueInfo) else ValueInfo(*i) for i in inputs]
        self.outputs: list[str] = list(outputs)
        self.nodes: list[Node] = list(nodes)
        self.constants: dict[str, Tensor] = {k: as_tensor(v) for k, v in (constants or {}).items()}
        self.metadata: dict[str, str] = dict(metadata or {})

    # ---- construction helpers used by the frontends and tests ----
    def add_input(self, name, shape, dtype="float32"):
        self.inputs.append(ValueInfo(name, shape, dtype))
        return name

    def add_constant(self, name, value):
        name = self.unique_name(name)
        self.constants[name] = as_tensor(value)
        return name

    def add_node(self, op, inputs, attrs=None, name=None, outputs=None, n_outputs=1):
        name = self.unique_name(name or op)
        if outputs is None:
            outputs = [name] if n_outputs == 1 else [f"{name}:{i}" for i in range(n_outputs)]
        self.nodes.append(Node(op, list(inputs), list(outputs), dict(attrs or {}), name))
        return outputs[0] if len(outputs) == 1 else outputs

    def unique_name(self, base):
        taken = self._names()
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    def _names(self):
        s = set(self.constants) | {i.name for i in self.inputs}
        for n in self.nodes:
            s.add(n.name)
            s.update(n.outputs)
        return s

    def copy(self) -> "Model":
        return copy.deepcopy(self)

    # ---- checks ----
    def validate(self):
        """Checks the graph is well formed: known ops, legal attributes, every value defined once before use."""
        defined = {i.name for i in self.inputs} | set(self.constants)
        if len(defined) != len(self.inputs) + len(self.constants):
            raise FormatError("an input and a constant share a name")
        for n in self.nodes:
            if n.op not in OPS:
                raise FormatError(f"node '{n.name}': unknown op '{n.op}'")
            lo, hi, schema = OPS[n.op]
            if not lo <= len(n.inputs) <= hi:
                raise FormatError(f"node '{n.name}' ({n.op}): {len(n.inputs)} inputs, expected {lo}..{hi}")
            for k, v in n.attrs.items():
                if k not in schema:
                    raise FormatError(f"node '{n.name}' ({n.op}): unknown attribute '{k}'")
                _check_attr(n, k, schema[k][0], v)
            if n.op in ("dense", "matmul", "conv2d", "activation", "qdense", "qconv2d", "qadd", "qactivation") \
                    and n.attr("act") not in ACTIVATIONS:
                raise FormatError(f"node '{n.name}': unknown activation '{n.attr('act')}'")
            for i in n.inputs:
                if i not in defined:
                    raise FormatError(f"node '{n.name}' ({n.op}) reads '{i}' before it is defined")
            for o in n.outputs:
                if o in defined:
                    raise FormatError(f"value '{o}' is defined twice")
                defined.add(o)
        for o in self.outputs:
            if o not in defined:
                raise FormatError(f"graph output '{o}' is never computed")
        return self

    # ---- convenience ----
    def __repr__(self):
        return (f"Model(inputs={[(i.name, i.shape) for i in self.inputs]}, outputs={self.outputs}, "
                f"nodes={len(self.nodes)}, constants={len(self.constants)})")

    def summary(self) -> str:
        lines = []
        for n in self.nodes:
            attrs = ", ".join(f"{k}={v}" for k, v in n.attrs.items())
            lines.append(f"{n.name:32s} {n.op:16s} {','.join(n.inputs)} -> {','.join(n.outputs)}  {attrs}")
        return "\n".join(lines)

    def run_reference(self, feeds):
        """Runs the graph with the numpy reference executor (float64 math)."""
        from .reference import run_reference

        return run_reference(self, feeds)

    def compress(self, prune=None, share=None, quant=None, calib=None, per_layer=None, seed=None, **options) -> "Model":
        """A compressed copy: CSR pruning, k-means codebooks, int8 or log2 weights (``slimrt.compress``)."""
        from .compress import compress

        return compress(self, prune=prune, share=share, quant=quant, calib=calib, per_layer=per_layer, seed=seed,
                        **options)

    def slim(self, widths=(1.0, 0.75, 0.5, 0.25), calib=None, eval_data=None, **kwargs) -> "Model":
        """A slimmable copy holding nested widths in one set of weights (``slimrt.slimmable.slim``)."""
        from .slimmable import slim

        return slim(self, widths=widths, calib=calib, eval_data=eval_data, **kwargs)

    def optimize(self, disable=(), only=None) -> "Model":
        """An optimized copy (BN folding, activation fusion, ...); see ``slimrt.optimize.PASSES``."""
        from .optimize import optimize

        return optimize(self, disable=disable, only=only)

    def save(self, path, optimize: bool = True):
        """Writes the model to a ``.slim`` file, atomically; runs the graph optimizer first unless told not to."""
        from .slimfile import save

        save(self.optimize() if optimize else self, path)
        return path


def _check_attr(node, key, typ, v):
    ok = {
        INT: lambda x: isinstance(x, (int, np.integer)) and not isinstance(x, bool),
        FLOAT: lambda x: isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool),
        STR: lambda x: isinstance(x, str),
        INTS: lambda x: isinstance(x, (list, tuple)) and all(isinstance(e, (int, np.integer)) for e in x),
        FLOATS: lambda x: isinstance(x, (list, tuple)) and all(isinstance(e, (int, float, np.floating)) for e in x),
    }[typ](v)
    if not ok:
        raise FormatError(f"node '{node.name}' ({node.op}): attribute '{key}' must be {typ}, got {v!r}")


def check_feeds(model: Model, feeds) -> dict:
    """Normalises run() inputs to {name: array}, checking names, dtypes and fixed dims."""
    if not isinstance(feeds, dict):
        if isinstance(feeds, (list, tuple)):
            if len(feeds) != len(model.inputs):
                raise InputError(f"model takes {len(model.inputs)} inputs, got {len(feeds)}")
            feeds = {i.name: f for i, f in zip(model.inputs, feeds)}
        else:
            if len(model.inputs) != 1:
                raise InputError(f"model takes {len(model.inputs)} inputs; pass a dict by name")
            feeds = {model.inputs[0].name: feeds}
    out = {}
    for info in model.inputs:
        if info.name not in feeds:
            raise InputError(f"missing input '{info.name}'")
        a = np.asarray(feeds[info.name])
        if len(a.shape) != len(info.shape) or any(d is not None and d != s for d, s in zip(info.shape, a.shape)):
            raise InputError(f"input '{info.name}': shape {a.shape} does not match {info.shape}")
        out[info.name] = a
    extra = set(feeds) - {i.name for i in model.inputs}
    if extra:
        raise InputError(f"unknown input(s) {sorted(extra)}")
    return out

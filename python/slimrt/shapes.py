"""Static shape inference for the IR (the batch stays symbolic as ``None``).

Mirrors the C++ ops' ``infer``; passes use it to know feature-map sizes.
"""
from __future__ import annotations

import numpy as np

from .ir import Model
from .reference import pool_out_size


def _bcast(a, b):
    r = max(len(a), len(b))
    a = (1,) * (r - len(a)) + tuple(a)
    b = (1,) * (r - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y or y is None:
            out.append(x)
        elif x is None:
            out.append(y)
        else:
            raise ValueError(f"shapes {a} and {b} do not broadcast")
    return tuple(out)


def _prod(s):
    p = 1
    for d in s:
        if d is None:
            return None
        p *= d
    return p


def infer_shapes(model: Model) -> dict:
    """{value name: shape tuple} for every value; ``None`` marks the dynamic batch (or unknown) dims."""
    shapes = {i.name: tuple(i.shape) for i in model.inputs}
    for k, t in model.constants.items():
        shapes[k] = tuple(t.shape)
    for n in model.nodes:
        ins = [shapes.get(i) for i in n.inputs]
        try:
            out = _infer(n, ins)
        except Exception:  # unknown: leave it out, passes then skip the rewrite
            out = None
        if out is not None:
            shapes[n.outputs[0]] = tuple(out)
    return shapes


def _infer(n, ins):
    op, a = n.op, n.attr
    x = ins[0]
    if x is None:
        return None
    if op == "dense":
        return x[:-1] + (ins[1][0],)
    if op == "matmul":
        b = ins[1]
        nn = b[-2] if a("trans_b") else b[-1]
        return _bcast(x[:-2], b[:-2]) + (x[-2], nn)
    if op == "conv2d":
        w = ins[1]
        kh, kw = (w[1], w[2]) if len(w) == 4 else tuple(a("kernel"))
        st, dl, p = a("strides"), a("dilations"), a("pads")
        oh = None if x[1] is None else (x[1] + p[0] + p[2] - dl[0] * (kh - 1) - 1) // st[0] + 1
        ow = None if x[2] is None else (x[2] + p[1] + p[3] - dl[1] * (kw - 1) - 1) // st[1] + 1
        return (x[0], oh, ow, w[0])
    if op in ("quantize", "dequantize", "qactivation", "qadd"):
        return x
    if op in ("qdense", "qconv2d", "qmax_pool", "qglobal_avg_pool"):  # shaped like their float twins
        return _infer(_FLOAT_TWIN[op](n), ins)
    if op in ("batch_norm", "activation", "prelu", "softmax", "layer_norm"):
        return x
    if op in ("max_pool", "avg_pool"):
        k, s, p, c = a("kernel"), a("strides"), a("pads"), a("ceil_mode")
        return (x[0], pool_out_size(x[1], k[0], s[0], p[0], p[2], c), pool_out_size(x[2], k[1], s[1], p[1], p[3], c),
                x[3])
    if op in ("global_avg_pool", "global_max_pool"):
        return (x[0], 1, 1, x[3]) if a("keepdims") else (x[0], x[3])
    if op in ("reduce_mean", "reduce_max"):
        axes = {ax % len(x) for ax in a("axes")}
        return tuple((1 if d in axes else s) for d, s in enumerate(x) if a("keepdims") or d not in axes)
    if op == "flatten":
        ax = a("axis")
        return x[:ax] + (_prod(x[ax:]),)
    if op == "reshape":
        spec = [x[i] if d == 0 else d for i, d in enumerate(a("shape"))]
        if -1 in spec:
            total, known = _prod(x), _prod([d for d in spec if d != -1])
            spec[spec.index(-1)] = None if total is None or not known else total // known
        return tuple(spec)
    if op == "transpose":
        return tuple(x[p] for p in a("perm"))
    if op in ("add", "sub", "mul", "div"):
        return _bcast(x, ins[1])
    if op == "concat":
        ax = a("axis") % len(x)
        tot = sum(s[ax] for s in ins) if all(s[ax] is not None for s in ins) else None
        return x[:ax] + (tot,) + x[ax + 1:]
    if op == "pad":
        p = a("pads")
        r = len(x)
        return tuple(None if d is None else d + p[i] + p[r + i] for i, d in enumerate(x))
    if op == "embedding":
        return x + (ins[1][1],)
    if op == "slice":
        out = list(x)
        for ax, s, e in zip(a("axes"), a("starts"), a("ends")):
            d = x[ax]
            if d is None:
                out[ax] = None
                continue
            s = min(max(s + d if s < 0 else s, 0), d)
            e = min(max(e + d if e < 0 else e, 0), d)
            out[ax] = max(e - s, 0)
        return tuple(out)
    if op == "reshape_dims":
        refs, k, spec = list(a("refs")), 0, []
        for j, d in enumerate(a("dims")):
            if d == -2:
                spec.append(ins[refs[2 * k]][refs[2 * k + 1]])
                k += 1
            else:
                spec.append(x[j] if d == 0 else d)
        if -1 in spec:
            total, known = _prod(x), _prod([d for d in spec if d != -1])
            spec[spec.index(-1)] = None if total is None or not known else total // known
        return tuple(spec)
    if op == "slice_like":
        out = list(x)
        for ax, rax in zip(a("axes"), a("ref_axes")):
            out[ax] = ins[1][rax]
        return tuple(out)
    if op in ("scaled_masked_softmax", "attention"):
        return x
    return None


def dummy_feeds(model: Model, batch: int = 1, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in model.inputs:
        shape = tuple(batch if d is None else d for d in i.shape)
        if i.dtype.startswith("int"):
            feeds[i.name] = rng.integers(0, 2, shape).astype(i.dtype)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(i.dtype)
    return feeds


def _twin(op):
    def make(n):
        from .ir import Node
        return Node(op, n.inputs, n.outputs, {k: v for k, v in n.attrs.items() if k in _TWIN_ATTRS[op]}, n.name)
    return make


_TWIN_ATTRS = {"dense": (), "conv2d": ("strides", "dilations", "pads", "groups"),
               "max_pool": ("kernel", "strides", "pads", "ceil_mode"), "global_avg_pool": ("keepdims",)}
_FLOAT_TWIN = {"qdense": _twin("dense"), "qconv2d": _twin("conv2d"), "qmax_pool": _twin("max_pool"),
               "qglobal_avg_pool": _twin("global_avg_pool")}

"""The offline graph optimizer: ``model.optimize()`` (run by ``Model.save`` unless ``optimize=False``).

Every pass is a function ``Model -> bool`` (changed?) that rewrites the model in
place; ``optimize`` runs them on a copy until nothing changes. Each pass keeps
the outputs the same within float tolerance (tests check every pass on every
test architecture). List them with ``slimrt.optimize.PASSES``; turn some off
with ``model.optimize(disable=["fold_batch_norm"])``.
"""
from __future__ import annotations

import numpy as np

from .formats import CSR, Codebook, Dense, Log2, QInt8, Tensor
from .ir import Model, Node
from .reference import run_node
from .shapes import infer_shapes

WEIGHT_OPS = ("dense", "conv2d")


# ---------------------------------------------------------------- helpers
def _consumers(model):
    uses = {}
    for n in model.nodes:
        for i in n.inputs:
            uses.setdefault(i, []).append(n)
    return uses


def _producer(model):
    return {o: n for n in model.nodes for o in n.outputs}


def _sole_consumer(model, uses, value):
    """The one node reading ``value``, if exactly one does and it is not a graph output."""
    us = uses.get(value, [])
    if len(us) != 1 or value in model.outputs:
        return None
    return us[0]


def _owned(uses, *names):
    """True when each constant is read by at most one node, so a pass may rewrite it in place
    (a slimmable model's widths read prefixes of the same weights)."""
    return all(len(uses.get(n, [])) <= 1 for n in names)


def _const(model, name):
    t = model.constants.get(name)
    return None if t is None else t


def _rename_uses(model, old, new):
    for n in model.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
    model.outputs = [new if o == old else o for o in model.outputs]


def scale_output_channels(t: Tensor, s: np.ndarray) -> Tensor:
    """w'[o, ...] = w[o, ...] * s[o], keeping the storage format (and so weight sharing):
    int8/log2 scales and codebook tables absorb the factor; only dense data is rewritten."""
    s = np.asarray(s, dtype=np.float64)
    rows = t.shape[0]
    if isinstance(t, Dense):
        d = t.data.astype(np.float64) * s.reshape((-1,) + (1,) * (t.data.ndim - 1))
        return Dense(d.astype(np.float32))
    if isinstance(t, QInt8):
        sc = (t.scale[0] * s) if t.axis < 0 else t.scale * s
        return QInt8(t.q, sc.astype(np.float32), axis=0, shape=t.shape, channels=t.channels)
    if isinstance(t, Log2):
        if np.any(s <= 0):
            return Dense(scale_output_channels(Dense(t.to_dense()), s).data)
        sc = (t.scale[0] * s) if t.axis < 0 else t.scale * s
        return Log2(t.packed, sc.astype(np.float32), t.bits, axis=0, shape=t.shape, packed=True, channels=t.channels)
    if isinstance(t, Codebook):
        if t.lut.dtype != np.float32:
            return Dense(scale_output_channels(Dense(t.to_dense()), s).data)
        lut = t.lut if t.axis == 0 else np.repeat(t.lut, rows, axis=0)
        lut = (lut.astype(np.float64) * s[:, None]).astype(np.float32)
        return Codebook(t.packed, lut, t.bits, axis=0, shape=t.shape, packed=True, channels=t.channels)
    if isinstance(t, CSR):
        v = t.values
        if isinstance(v, Dense):
            r = np.repeat(np.arange(rows), np.diff(t.indptr.astype(np.int64)))
            nv = Dense((v.data.astype(np.float64) * s[r]).astype(np.float32))
        else:
            nv = _scale_per_row(v, s, rows)
        return CSR(t.shape, t.indptr, t.indices, nv, index_bits=t.index_bits)
    raise TypeError(f"cannot scale a {type(t).__name__} tensor")


def _scale_per_row(v, s, rows):
    """Values of a CSR tensor (1-D, nnz) given one factor per CSR row."""
    if isinstance(v, QInt8):
        sc = (v.scale[0] * s) if v.axis < 0 else v.scale * s
        return QInt8(v.q, sc.astype(np.float32), axis=0, shape=v.shape, channels=rows)
    if isinstance(v, Log2) and np.all(s > 0):
        sc = (v.scale[0] * s) if v.axis < 0 else v.scale * s
        return Log2(v.packed, sc.astype(np.float32), v.bits, axis=0, shape=v.shape, packed=True, channels=rows)
    if isinstance(v, Codebook) and v.lut.dtype == np.float32:
        lut = v.lut if v.axis == 0 else np.repeat(v.lut, rows, axis=0)
        return Codebook(v.packed, (lut * s[:, None]).astype(np.float32), v.bits, axis=0, shape=v.shape, packed=True,
                        channels=rows)
    raise TypeError(f"cannot scale CSR values stored as {type(v).__name__}")


def _bn_affine(model, bn):
    g, b, m, v = (model.constants[i].to_dense().astype(np.float64) for i in bn.inputs[1:5])
    s = g / np.sqrt(v + bn.attr("epsilon"))
    return s, b - m * s


# ---------------------------------------------------------------- passes
def fold_batch_norm(model: Model) -> bool:
    """conv2d/dense -> batch_norm: scale the weight's output channels, fold the shift into the bias."""
    uses = _consumers(model)
    changed = False
    for p in list(model.nodes):
        if p.op not in WEIGHT_OPS or p.attr("act") != "none" or p.inputs[1] not in model.constants:
            continue
        bn = _sole_consumer(model, uses, p.outputs[0])
        if bn is None or bn.op != "batch_norm" or not all(i in model.constants for i in bn.inputs[1:]):
            continue
        if not _owned(uses, *p.inputs[1:]):
            continue
        s, t = _bn_affine(model, bn)
        w = model.constants[p.inputs[1]]
        if w.shape[0] != s.size:
            continue
        try:
            model.constants[p.inputs[1]] = scale_output_channels(w, s)
        except TypeError:
            continue
        bias = model.constants[p.inputs[2]].to_dense().astype(np.float64) if len(p.inputs) > 2 else 0.0
        nb = (bias * s + t).astype(np.float32)
        if len(p.inputs) > 2:
            model.constants[p.inputs[2]] = Dense(nb)
        else:
            p.inputs.append(model.add_constant(p.name + ".bias", nb))
        p.outputs = list(bn.outputs)
        model.nodes.remove(bn)
        uses = _consumers(model)
        changed = True
    return changed


def fold_batch_norm_forward(model: Model) -> bool:
    """batch_norm -> dense (or an unpadded conv2d), e.g. after ReLU -> BN: scale the weight's input
    channels and add W.t to the bias. Exact only without zero padding, so padded convs keep their BN."""
    uses = _consumers(model)
    changed = False
    for bn in list(model.nodes):
        if bn.op != "batch_norm" or not all(i in model.constants for i in bn.inputs[1:]):
            continue
        c = _sole_consumer(model, uses, bn.outputs[0])
        if c is None or c.op not in WEIGHT_OPS or c.inputs[0] != bn.outputs[0]:
            continue
        w = model.constants.get(c.inputs[1])
        if not isinstance(w, Dense) or not _owned(uses, *c.inputs[1:]):
            continue
        if c.op == "conv2d" and (any(c.attr("pads")) or c.attr("groups") != 1):
            continue
        s, t = _bn_affine(model, bn)
        wd = w.data.astype(np.float64)
        if wd.shape[-1] != s.size:
            continue
        shift = (wd * t).reshape(wd.shape[0], -1).sum(axis=1)
        bias = model.constants[c.inputs[2]].to_dense().astype(np.float64) if len(c.inputs) > 2 else 0.0
        model.constants[c.inputs[1]] = Dense((wd * s).astype(np.float32))
        nb = (bias + shift).astype(np.float32)
        if len(c.inputs) > 2:
            model.constants[c.inputs[2]] = Dense(nb)
        else:
            c.inputs.append(model.add_constant(c.name + ".bias", nb))
        c.inputs[0] = bn.inputs[0]
        model.nodes.remove(bn)
        uses = _consumers(model)
        changed = True
    return changed


def fold_scale_into_weights(model: Model) -> bool:
    """mul(x, scalar constant) -> dense/conv2d: scale the weights instead (exact with zero padding)."""
    uses = _consumers(model)
    changed = False
    for m in list(model.nodes):
        if m.op != "mul" or m.inputs[1] not in model.constants or m.inputs[0] in model.constants:
            continue
        k = model.constants[m.inputs[1]].to_dense()
        if k.size != 1:
            continue
        c = _sole_consumer(model, uses, m.outputs[0])
        if c is None or c.op not in WEIGHT_OPS or c.inputs[0] != m.outputs[0] or c.inputs[1] not in model.constants:
            continue
        if not _owned(uses, c.inputs[1]):
            continue
        w = model.constants[c.inputs[1]]
        try:
            model.constants[c.inputs[1]] = scale_output_channels(w, np.full(w.shape[0], float(k.ravel()[0])))
        except TypeError:
            continue
        c.inputs[0] = m.inputs[0]
        model.nodes.remove(m)
        uses = _consumers(model)
        changed = True
    return changed


def fuse_activation(model: Model) -> bool:
    """dense/conv2d/matmul (act none) -> activation: run the activation in the kernel epilogue."""
    uses = _consumers(model)
    changed = False
    for p in list(model.nodes):
        if p.op not in ("dense", "conv2d", "matmul") or p.attr("act") != "none":
            continue
        a = _sole_consumer(model, uses, p.outputs[0])
        if a is None or a.op != "activation":
            continue
        p.attrs["act"] = a.attr("act")
        if a.attr("alpha"):
            p.attrs["alpha"] = a.attr("alpha")
        p.outputs = list(a.outputs)
        model.nodes.remove(a)
        uses = _consumers(model)
        changed = True
    return changed


def fuse_residual(model: Model) -> bool:
    """add(conv2d/dense(x), r) -> conv2d/dense with r added in the kernel epilogue (residual=1), so a
    ResNet block's add (and the activation after it, see fuse_activation) cost no extra pass."""
    uses = _consumers(model)
    prod = _producer(model)
    order = {n.name: i for i, n in enumerate(model.nodes)}
    shapes = None
    for add in list(model.nodes):
        if add.op != "add" or any(i in model.constants for i in add.inputs) or add.inputs[0] == add.inputs[1]:
            continue
        for k in (0, 1):
            p = prod.get(add.inputs[k])
            other = add.inputs[1 - k]
            if (p is None or p.op not in WEIGHT_OPS or p.attr("act") != "none" or p.attr("residual")
                    or _sole_consumer(model, uses, p.outputs[0]) is not add):
                continue
            po = prod.get(other)
            if po is not None and order[po.name] >= order[p.name]:
                continue  # the residual must exist before the conv runs
            shapes = shapes or infer_shapes(model)
            if shapes.get(other) is None or shapes.get(other) != shapes.get(p.outputs[0]):
                continue  # no broadcasting in the epilogue
            p.inputs.append(other)
            p.attrs["residual"] = 1
            p.outputs = list(add.outputs)
            model.nodes.remove(add)
            return True
    return False


def fold_pad_into_conv(model: Model) -> bool:
    """pad (zeros, H/W only) -> conv2d: the convolution pads instead."""
    uses = _consumers(model)
    changed = False
    for p in list(model.nodes):
        if p.op != "pad" or p.attr("value") != 0.0:
            continue
        pads = list(p.attr("pads"))
        if len(pads) != 8 or any(pads[i] for i in (0, 3, 4, 7)) or min(pads) < 0:
            continue
        c = _sole_consumer(model, uses, p.outputs[0])
        if c is None or c.op != "conv2d" or c.inputs[0] != p.outputs[0]:
            continue
        cp = list(c.attr("pads"))
        c.attrs["pads"] = [cp[0] + pads[1], cp[1] + pads[2], cp[2] + pads[5], cp[3] + pads[6]]
        c.inputs[0] = p.inputs[0]
        model.nodes.remove(p)
        uses = _consumers(model)
        changed = True
    return changed


def cancel_transposes(model: Model) -> bool:
    """transpose -> transpose: the second reads the first's input with the composed permutation (gone
    when that is the identity); the first goes when nothing else reads it."""
    uses = _consumers(model)
    prod = _producer(model)
    for t2 in list(model.nodes):
        t1 = prod.get(t2.inputs[0]) if t2.op == "transpose" else None
        if t1 is None or t1.op != "transpose":
            continue
        p, q = list(t1.attr("perm")), list(t2.attr("perm"))
        comp = [p[i] for i in q]
        if len(uses.get(t1.outputs[0], [])) == 1 and t1.outputs[0] not in model.outputs:
            model.nodes.remove(t1)
        if comp == list(range(len(comp))) and t2.outputs[0] not in model.outputs:
            model.nodes.remove(t2)
            _rename_uses(model, t2.outputs[0], t1.inputs[0])
        else:
            t2.inputs[0] = t1.inputs[0]
            t2.attrs["perm"] = comp
        return True
    return False


_SINK_LAST_AXIS = ("activation", "layer_norm", "dense")
_SINK_ELTWISE = ("add", "sub", "mul", "div")


def sink_transposes(model: Model) -> bool:
    """A transpose that keeps the last axis, read only by an op that works along the last axis
    (activation, layer_norm, dense without a fused residual) or by an elementwise op whose other operand
    is the same transpose of another value (or a constant of rank <= 1): the op reads the untransposed
    value and the transpose moves after it, towards the next transpose it cancels with
    (cancel_transposes). PyTorch's batch-first MultiheadAttention leaves such pairs around a whole
    encoder layer."""
    uses = _consumers(model)
    prod = _producer(model)
    for t in model.nodes:
        if t.op != "transpose":
            continue
        p, v = list(t.attr("perm")), t.outputs[0]
        if len(p) < 2 or p[-1] != len(p) - 1:
            continue
        chain = _residual_branch(model, uses, v)
        if chain is not None:  # T(x) -> last-axis ops -> e <- T(x): the branch and e read x, T moves after e
            for n in (chain[0], chain[-1]):
                n.inputs = [t.inputs[0] if i == v else i for i in n.inputs]
            model.nodes.remove(t)
            _transpose_after(model, chain[-1], p)
            return True
        c = _sole_consumer(model, uses, v)
        if c is None and v not in model.outputs:
            r = _cancelling_reader(model, uses, v, p)
            if r is not None:  # a copy of t for r alone: it cancels further on
                cp = model.unique_name(f"{t.name}/copy")
                model.nodes.insert(model.nodes.index(r), Node("transpose", [t.inputs[0]], [cp], {"perm": p}, cp))
                r.inputs[0] = cp
                return True
        if c is None or len(c.outputs) != 1:
            continue
        gone = [t]
        if c.op in _SINK_LAST_AXIS:
            if not _last_axis_reader(c, v):
                continue
        elif c.op in _SINK_ELTWISE:
            o = c.inputs[1] if c.inputs[0] == v else c.inputs[0]
            t2 = prod.get(o)
            if o == v:
                pass
            elif o in model.constants and len(model.constants[o].shape) <= 1:
                pass
            elif t2 is not None and t2.op == "transpose" and list(t2.attr("perm")) == p and \
                    _sole_consumer(model, uses, o) is c:
                gone.append(t2)
            else:
                continue
        else:
            continue
        src = {g.outputs[0]: g.inputs[0] for g in gone}
        c.inputs = [src.get(i, i) for i in c.inputs]
        for g in gone:
            model.nodes.remove(g)
        _transpose_after(model, c, p)
        return True
    return False


def _last_axis_reader(n, u):
    """n works along the last axis of u, its main input (activation, layer_norm, dense without a fused
    residual; u not also among its other inputs), and has one output."""
    return (n.op in _SINK_LAST_AXIS and n.inputs[0] == u and u not in n.inputs[1:] and len(n.outputs) == 1
            and not (n.op == "dense" and n.attr("residual")))


def _transpose_after(model, n, p):
    """n writes a new value and a transpose (perm p) of it writes n's former output in its place."""
    out = n.outputs[0]
    pre = model.unique_name(f"{n.name}/pre")
    n.outputs = [pre]
    model.nodes.insert(model.nodes.index(n) + 1,
                       Node("transpose", [pre], [out], {"perm": p}, model.unique_name(f"{n.name}/perm")))
    _copy_act_quant(model, out, pre)


def _last_axis_chain_end(model, uses, n, u):
    """From n, reading u: the last-axis ops each read only by the next, and the first node after them
    (or None when a value of the chain is read by several nodes or is a graph output)."""
    chain = []
    while _last_axis_reader(n, u):
        chain.append(n)
        u = n.outputs[0]
        n = _sole_consumer(model, uses, u)
        if n is None:
            return chain, None
    return chain, n


def _residual_branch(model, uses, v):
    """[n1, .., nk, e] when v is read by exactly two nodes: e (add / sub / mul / div of v and nk's
    output) and n1, the first of a chain of last-axis ops each read only by the next, whose last result
    is e's other operand; else None."""
    us = uses.get(v, [])
    if len(us) != 2 or v in model.outputs:
        return None
    for e, n in ((us[0], us[1]), (us[1], us[0])):
        if e.op not in _SINK_ELTWISE:
            continue
        chain, after = _last_axis_chain_end(model, uses, n, v)
        if chain and after is e and sorted(e.inputs) == sorted([v, chain[-1].outputs[0]]):
            return chain + [e]
    return None


def _cancelling_reader(model, uses, v, p):
    """A reader of v (a transpose's output, perm p, read by several nodes) that starts a chain of
    last-axis ops, each read only by the next, ending in a transpose that undoes p; or None."""
    inv = [0] * len(p)
    for i, a in enumerate(p):
        inv[a] = i
    for r in uses.get(v, []):
        chain, after = _last_axis_chain_end(model, uses, r, v)
        if chain and after is not None and after.op == "transpose" and list(after.attr("perm")) == inv:
            return r
    return None


def _copy_act_quant(model, src, dst):
    """Calibrated activation parameters (metadata["act_quant"]) of value src given to dst too (a value
    that differs from src only by a permutation of its elements)."""
    import json

    raw = model.metadata.get("act_quant")
    if not raw:
        return
    try:
        d = json.loads(raw)
    except ValueError:
        return
    if isinstance(d, dict) and src in d:
        d[dst] = d[src]
        model.metadata["act_quant"] = json.dumps(d)


def remove_identities(model: Model) -> bool:
    """activation 'none', transposes with the identity permutation, reshape -> reshape chains."""
    uses = _consumers(model)
    for n in list(model.nodes):
        ident = ((n.op == "activation" and n.attr("act") == "none") or
                 (n.op == "transpose" and list(n.attr("perm")) == list(range(len(n.attr("perm"))))))
        if ident and n.outputs[0] not in model.outputs:
            model.nodes.remove(n)
            _rename_uses(model, n.outputs[0], n.inputs[0])
            return True
        if ident and n.inputs[0] not in model.outputs and len(uses.get(n.inputs[0], [])) == 1:
            prod = _producer(model).get(n.inputs[0])
            if prod is not None:  # a graph output: its producer writes it under the output's name
                prod.outputs = [n.outputs[0] if o == n.inputs[0] else o for o in prod.outputs]
                _copy_act_quant(model, n.inputs[0], n.outputs[0])
                model.nodes.remove(n)
                return True
        if n.op in ("reshape", "flatten"):
            c = _sole_consumer(model, uses, n.outputs[0])
            if c is not None and c.op == "reshape" and 0 not in c.attr("shape"):
                c.inputs[0] = n.inputs[0]
                model.nodes.remove(n)
                return True
    return False


def fold_transpose_into_dense(model: Model) -> bool:
    """transpose(NHWC -> NCHW) -> flatten -> dense (PyTorch heads): permute the dense weight's columns
    so that it reads the NHWC flatten order directly, and drop the transpose."""
    uses = _consumers(model)
    shapes = None
    for t in list(model.nodes):
        if t.op != "transpose" or list(t.attr("perm")) != [0, 3, 1, 2]:
            continue
        f = _sole_consumer(model, uses, t.outputs[0])
        if f is None or f.op != "flatten" or f.attr("axis") != 1:
            continue
        d = _sole_consumer(model, uses, f.outputs[0])
        if d is None or d.op != "dense" or not isinstance(model.constants.get(d.inputs[1]), Dense):
            continue
        if not _owned(uses, d.inputs[1]):
            continue
        shapes = shapes or infer_shapes(model)
        s = shapes.get(t.inputs[0])
        if s is None or len(s) != 4 or any(v is None for v in s[1:]):
            continue
        _, h, w, c = s
        wd = model.constants[d.inputs[1]].data
        if wd.shape[1] != h * w * c:
            continue
        model.constants[d.inputs[1]] = Dense(
            np.ascontiguousarray(wd.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(wd.shape[0], -1)))
        f.inputs[0] = t.inputs[0]
        model.nodes.remove(t)
        return True
    return False


def constant_fold(model: Model) -> bool:
    """Nodes whose inputs are all constants become constants. In a slimmable model the
    slices/reshapes/concats of shared weights stay nodes (the runtime evaluates them once at load),
    so the file keeps one copy of the weights."""
    changed = False
    views = ("slice", "reshape", "flatten", "concat", "transpose") if "widths" in model.metadata else ()
    for n in list(model.nodes):
        if not n.inputs or not all(i in model.constants for i in n.inputs) or n.outputs[0] in model.outputs:
            continue
        if n.op in views:
            continue
        args = [model.constants[i].to_dense() for i in n.inputs]
        args = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in args]
        y = np.asarray(run_node(n, args))
        model.constants[n.outputs[0]] = Dense(y.astype(np.float32) if y.dtype.kind == "f" else y)
        model.nodes.remove(n)
        changed = True
    return changed


def dead_code(model: Model) -> bool:
    """Drops nodes nothing reads and constants no node reads."""
    live = set(model.outputs)
    keep = []
    for n in reversed(model.nodes):
        if any(o in live for o in n.outputs):
            keep.append(n)
            live.update(n.inputs)
    keep.reverse()
    changed = len(keep) != len(model.nodes)
    model.nodes = keep
    for k in [k for k in model.constants if k not in live]:
        del model.constants[k]
        changed = True
    return changed


PASSES = {
    "remove_identities": remove_identities,
    "sink_transposes": sink_transposes,
    "cancel_transposes": cancel_transposes,
    "constant_fold": constant_fold,
    "fold_scale_into_weights": fold_scale_into_weights,
    "fold_batch_norm": fold_batch_norm,
    "fold_batch_norm_forward": fold_batch_norm_forward,
    "fold_pad_into_conv": fold_pad_into_conv,
    "fold_transpose_into_dense": fold_transpose_into_dense,
    "fuse_residual": fuse_residual,
    "fuse_activation": fuse_activation,
    "dead_code": dead_code,
}


def optimize(model: Model, disable=(), only=None, max_rounds=50) -> Model:
    """Returns an optimized copy of ``model``; ``disable``/``only`` name passes from ``PASSES``."""
    unknown = (set(disable) | set(only or ())) - set(PASSES)
    if unknown:
        from .errors import InputError

        raise InputError(f"unknown optimizer pass(es) {sorted(unknown)}; known: {list(PASSES)}")
    m = model.copy()
    names = [p for p in (only or PASSES) if p not in set(disable)]
    # transposes first, to a fixed point: sinking one needs the plain ops (add, dense) the fusions
    # would otherwise merge before the transpose reached them
    for _ in range(max_rounds):
        changed = False
        for name in [p for p in ("remove_identities", "sink_transposes", "cancel_transposes") if p in names]:
            while PASSES[name](m):
                changed = True
        if not changed:
            break
    for _ in range(max_rounds):
        changed = False
        for name in names:
            while PASSES[name](m):
                changed = True
        if not changed:
            break
    m.validate()
    return m


# ---------------------------------------------------------------- static int8 activation chains
# u8 value: q stands for scale * (q - zero_point). The calibration (compress(..., calib=x)) stores the
# [scale, zero_point] of every float value in metadata["act_quant"]; int8_chain keeps values uint8 between
# the layers that can read and write them, so consecutive int8 layers never go through float.
_Q8_TRANSPARENT = ("max_pool", "flatten", "reshape")   # the codes pass through (same parameters)
_Q8_INLINE_ACTS = ("none", "relu", "relu6", "leaky_relu")
_Q8_OPS = ("quantize", "dequantize", "qdense", "qconv2d", "qmax_pool", "qglobal_avg_pool", "qadd", "qactivation")


def _act_quant_params(model):
    """{value: (scale, zero_point)} from metadata["act_quant"], or None (absent or malformed)."""
    import json
    import math

    raw = model.metadata.get("act_quant")
    if not raw or "widths" in model.metadata:
        return None
    try:
        d = json.loads(raw)
        out = {}
        for k, v in d.items():
            s, z = float(v[0]), int(v[1])
            if math.isfinite(s) and s > 0 and 0 <= z <= 255 and np.float32(s) > 0:
                out[k] = (s, z)
        return out
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None


_Q8_MIN_K = 16  # reduction length below which a conv stays float (vpdpbusd works on groups of 4, tiles of 64)
_Q8_MIN_OUT = 16  # output channels (per group) below which a conv stays float


def _q8_layer_ok(model, n):
    """dense / conv2d whose weight is QInt8 (per output channel or per tensor) with constant bias."""
    if n.op not in ("dense", "conv2d") or len(n.inputs) < 2:
        return False
    w = model.constants.get(n.inputs[1])
    if not isinstance(w, QInt8) or w.axis not in (0, -1):
        return False
    if n.op == "dense" and len(w.shape) != 2:
        return False
    if n.op == "conv2d":
        if len(w.shape) != 4 or n.attr("kernel"):
            return False
        depthwise = n.attr("groups") > 1 and w.shape[3] == 1
        if depthwise and (n.attr("act") not in _Q8_INLINE_ACTS or w.shape[0] != n.attr("groups")):
            return False
        k = w.shape[1] * w.shape[2] * w.shape[3]
        if not depthwise and k < _Q8_MIN_K:
            return False  # e.g. a 3x3 conv on 1 channel: too short a reduction for int8 to pay; stays float
        og, cg = w.shape[0] // max(1, n.attr("groups")), w.shape[3]
        if not depthwise and (og < _Q8_MIN_OUT or (cg > 4 and cg % 4 and og <= 32)):
            # Few output channels leave most of the int8 tiles' 16+ columns empty, and taps of C % 4 != 0
            # channels (beyond the <= 4-channel stems' row copies) are gathered one by one: the fp32 direct
            # conv measured 1.7-1.9x faster on LeNet-5's 1->6 and 6->16 5x5 convs at batch 64. The runtime
            # applies the same rule to int8 conv weights outside chains (ops/weights.cpp q8_conv_loses).
            return False
    else:
        k = w.shape[1]
    if k > 65536:
        return False
    nb = len(n.inputs) - (1 if n.attr("residual") else 0)
    return nb <= 2 or n.inputs[2] in model.constants


def _cancel_dq_q(model, uses):
    """dequantize -> quantize: the same parameters cancel; others become one requantizing table."""
    prod = _producer(model)
    for q in list(model.nodes):
        if q.op != "quantize":
            continue
        d = prod.get(q.inputs[0])
        if d is None or d.op != "dequantize":
            continue
        same = (np.float32(d.attr("scale")) == np.float32(q.attr("scale"))
                and d.attr("zero_point") == q.attr("zero_point"))
        if same and q.outputs[0] not in model.outputs:
            model.nodes.remove(q)
            _rename_uses(model, q.outputs[0], d.inputs[0])
        else:
            q.op, q.inputs = "qactivation", [d.inputs[0]]
            q.attrs = {"x_scale": d.attr("scale"), "x_zero": d.attr("zero_point"), "out_scale": q.attr("scale"),
                       "out_zero": q.attr("zero_point")}
        return True
    return False


def int8_chain(model: Model) -> bool:
    """Static int8 activations (on when ``metadata["act_quant"]`` holds a calibration and weights are QInt8):
    dense / conv2d with QInt8 weights become qdense / qconv2d reading uint8 activations and writing uint8
    ones requantized in their epilogue (bias, residual, activation first); max_pool, flatten, reshape,
    global average pooling, add and activations between them stay uint8 (qmax_pool, views,
    qglobal_avg_pool, qadd, qactivation). A quantize enters each chain, a dequantize leaves it (the
    last layer writes float directly when only float ops read it); dequantize -> quantize pairs cancel."""
    uses = _consumers(model)
    if _cancel_dq_q(model, uses):
        return True
    aq = _act_quant_params(model)
    if not aq:
        return False
    outputs = set(model.outputs)
    qp = {}                       # value -> (scale, zero) of values that will be uint8
    done = set()                  # nodes already reading or writing uint8 (chains made before)
    for n in model.nodes:
        o = n.outputs[0]
        if n.op in _Q8_OPS:
            done.add(n.name)
        if n.op == "quantize":
            qp[o] = (float(n.attr("scale")), int(n.attr("zero_point")))
        elif n.op in ("qdense", "qconv2d", "qglobal_avg_pool", "qadd") and n.attr("out_scale") > 0:
            qp[o] = (float(n.attr("out_scale")), int(n.attr("out_zero")))
        elif n.op == "qactivation":
            qp[o] = (float(n.attr("out_scale")), int(n.attr("out_zero")))
        elif n.op in ("qmax_pool", "flatten", "reshape") and n.inputs[0] in qp:
            qp[o] = qp[n.inputs[0]]
            done.add(n.name)
    plan = {}                     # node name -> kind of rewrite
    for n in model.nodes:
        if n.name in done:
            continue
        x = n.inputs[0] if n.inputs else None
        o = n.outputs[0]
        out_ok = o in aq and o not in outputs
        if _q8_layer_ok(model, n) and (x in qp or x in aq):
            plan[n.name] = "layer"
            if out_ok:
                qp[o] = aq[o]
        elif n.op in _Q8_TRANSPARENT and x in qp and o not in outputs:
            plan[n.name] = "transparent"
            qp[o] = qp[x]
        elif n.op in ("global_avg_pool", "reduce_mean") and x in qp and _is_spatial_mean(model, n):
            plan[n.name] = "gap"
            if out_ok:
                qp[o] = aq[o]
        elif n.op == "add" and x in qp and n.inputs[1] in qp and out_ok and _same_shape(model, n):
            plan[n.name] = "add"
            qp[o] = aq[o]
        elif n.op == "activation" and x in qp and out_ok:
            plan[n.name] = "act"
            # relu / relu6 keep the input's parameters: on the codes they are a clamp (exact, fast)
            qp[o] = qp[x] if n.attr("act") in ("relu", "relu6") else aq[o]
    if not plan:
        return False
    # A planned uint8 output that only float ops read: layers and pools write float instead.
    for n in model.nodes:
        o = n.outputs[0]
        if plan.get(n.name) in ("layer", "gap") and o in qp:
            readers = uses.get(o, [])
            if readers and all(not _reads_u8(plan, r, o) for r in readers):
                del qp[o]
    # Rewrite.
    conv = {}  # (value, "q" | "f") -> converted name

    def as_u8(v):
        if v in qp:
            return v
        key = (v, "q")
        if key not in conv:
            s, z = aq[v]
            conv[key] = model.unique_name(v + ":q8")
            new.append(Node("quantize", [v], [conv[key]], {"scale": s, "zero_point": z}, conv[key]))
        return conv[key]

    def as_f32(v):
        if v not in qp or v in model.constants:
            return v
        key = (v, "f")
        if key not in conv:
            s, z = qp[v]
            conv[key] = model.unique_name(v + ":f32")
            new.append(Node("dequantize", [v], [conv[key]], {"scale": s, "zero_point": z}, conv[key]))
        return conv[key]

    def out_attrs(o):
        return {"out_scale": qp[o][0], "out_zero": qp[o][1]} if o in qp else {"out_scale": 0.0, "out_zero": 0}

    new = []
    for n in model.nodes:
        kind = plan.get(n.name)
        o = n.outputs[0]
        if kind == "layer":
            x = as_u8(n.inputs[0])
            a = {k: v for k, v in n.attrs.items() if k in ("act", "alpha", "residual", "strides", "dilations",
                                                              "pads", "groups")}
            s, z = qp.get(n.inputs[0]) or aq[n.inputs[0]]
            a.update(x_scale=s, x_zero=z, **out_attrs(o))
            ins = [x] + n.inputs[1:]
            if n.attr("residual"):
                r = n.inputs[-1]
                if r in qp:
                    a.update(res_scale=qp[r][0], res_zero=qp[r][1])
            n.op, n.inputs, n.attrs = "q" + n.op, ins, a
        elif kind == "transparent":
            if n.op == "max_pool":
                n.op = "qmax_pool"
        elif kind == "gap":
            keep = n.attr("keepdims")
            s, z = qp[n.inputs[0]]
            n.op, n.attrs = "qglobal_avg_pool", {"x_scale": s, "x_zero": z, "keepdims": keep, **out_attrs(o)}
        elif kind == "add":
            (sa, za), (sb, zb) = qp[n.inputs[0]], qp[n.inputs[1]]
            n.op, n.attrs = "qadd", {"a_scale": sa, "a_zero": za, "b_scale": sb, "b_zero": zb, **out_attrs(o)}
        elif kind == "act":
            s, z = qp[n.inputs[0]]
            n.op = "qactivation"
            n.attrs = {"act": n.attr("act"), "alpha": n.attr("alpha"), "x_scale": s, "x_zero": z,
                       "out_scale": qp[o][0], "out_zero": qp[o][1]}
        elif n.name not in done:
            n.inputs = [as_f32(i) for i in n.inputs]
        new.append(n)
    model.nodes = new
    return True


def _reads_u8(plan, node, value):
    """True when ``node`` (after the rewrite) reads ``value`` as uint8."""
    kind = plan.get(node.name)
    if kind == "layer":
        return node.inputs[0] == value or (node.attr("residual") and node.inputs[-1] == value)
    return kind in ("transparent", "gap", "add", "act")


def _is_spatial_mean(model, n):
    if n.op == "global_avg_pool":
        return True
    shapes = infer_shapes(model)
    s = shapes.get(n.inputs[0])
    return s is not None and len(s) == 4 and sorted(a % 4 for a in n.attr("axes")) == [1, 2]


def _same_shape(model, n):
    shapes = infer_shapes(model)
    a, b = shapes.get(n.inputs[0]), shapes.get(n.inputs[1])
    return a is not None and a == b


PASSES["int8_chain"] = int8_chain

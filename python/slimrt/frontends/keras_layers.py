"""Keras layer -> slimrt IR converters: the allow-list of layer classes the importer understands.

Each converter is ``fn(b, L, xs) -> [T, ...]``: ``b`` is the graph builder (``keras._Builder``:
IR model, weights, constants, activations), ``L`` the layer (``keras.Layer``: name, class,
checked config getters, weights scope) and ``xs`` its input values (``T``: IR value name,
static shape with ``None`` for the batch, dtype). Shapes are tracked here because Keras'
"same" padding depends on the input size and every weight is checked against the shape the
config implies before it is read.

Layout: Keras is channels-last, like the IR, so feature maps pass through unchanged; only
``data_format="channels_last"`` layers are accepted.
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError, UnsupportedError

# Keras layer classes that are the identity at inference
NOOP_CLASSES = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
)


# layer classes called with several positional tensors
MULTI_ARG_CLASSES = ("MultiHeadAttention",)


# ---- small helpers ----

def one_input(L, xs):
    if len(xs) != 1:
        raise FormatError(f"layer '{L.name}' ({L.cls}) takes one input, the config gives {len(xs)}")
    return xs[0]


def rank_of(L, x, *ranks):
    if len(x.shape) not in ranks:
        raise UnsupportedError(f"layer '{L.name}' ({L.cls}): input of rank {len(x.shape)} "
                               f"(shape {_fmt(x.shape)}); supported: rank {' or '.join(map(str, ranks))}")


def static_dim(L, x, axis, what="dimension"):
    d = x.shape[axis]
    if d is None:
        raise UnsupportedError(f"layer '{L.name}' ({L.cls}) needs a static {what} (axis {axis}) but the input "
                               f"shape is {_fmt(x.shape)}; pass input_shapes= to from_keras")
    return d


def _fmt(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def channels_last(L):
    df = L.get("data_format", "channels_last")
    if df not in (None, "channels_last"):
        raise UnsupportedError(f"layer '{L.name}' ({L.cls}): data_format='{df}' is not supported "
                               "(only channels_last)")


def norm_axis(L, axis, rank):
    if not isinstance(axis, int) or isinstance(axis, bool) or not -rank <= axis < rank:
        raise FormatError(f"layer '{L.name}' ({L.cls}): axis {axis!r} is invalid for rank {rank}")
    return axis % rank


def same_pads(L, size, k, s, d):
    """TF "same" padding: output ceil(size / s); the odd pixel of padding goes to the end."""
    eff = (k - 1) * d + 1
    if size is None:
        if s == 1:
            total = eff - 1
            return total // 2, total - total // 2
        raise UnsupportedError(f"layer '{L.name}' ({L.cls}): padding='same' with stride {s} needs a static input "
                               "size; pass input_shapes= to from_keras")
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def out_size(L, size, k, s, d, p0, p1):
    if size is None:
        return None
    o = (size + p0 + p1 - ((k - 1) * d + 1)) // s + 1
    if o < 1:
        raise FormatError(f"layer '{L.name}' ({L.cls}): window {k} (dilation {d}) does not fit an input of "
                          f"size {size}")
    return o


def to_nhwc(b, L, x):
    """[N, W, C] -> [N, 1, W, C] so that 1-D layers run as 2-D ones."""
    return b.node("reshape", [x.name], {"shape": [0, 1, _dim_or_neg(x.shape[1]), _dim_or_neg(x.shape[2])]}, L,
                  (x.shape[0], 1, x.shape[1], x.shape[2]), tag="to_2d")


def from_nhwc(b, L, x, final=True):
    return b.node("reshape", [x.name], {"shape": [0, _dim_or_neg(x.shape[2]), _dim_or_neg(x.shape[3])]}, L,
                  (x.shape[0], x.shape[2], x.shape[3]), final=final, tag="to_1d")


def _dim_or_neg(d):
    return -1 if d is None else int(d)


def broadcast_shapes(L, shapes):
    r = len(shapes[0])
    if any(len(s) != r for s in shapes):
        raise UnsupportedError(f"layer '{L.name}' ({L.cls}): inputs of different ranks {[_fmt(s) for s in shapes]}")
    out = []
    for i in range(r):
        dims = {s[i] for s in shapes} - {1}
        if i == 0:
            out.append(None)
            continue
        known = {d for d in dims if d is not None}
        if len(known) > 1:
            raise FormatError(f"layer '{L.name}' ({L.cls}): input shapes {[_fmt(s) for s in shapes]} do not broadcast")
        out.append(known.pop() if known else (None if None in dims else 1))
    return tuple(out)


# ---- core layers ----

def dense(b, L, xs):
    x = one_input(L, xs)
    if len(x.shape) < 2:
        raise UnsupportedError(f"layer '{L.name}' (Dense): input of rank {len(x.shape)}")
    b.check_plain_weights(L)
    k = static_dim(L, x, -1, "feature dimension")
    units = L.int("units", minimum=1)
    use_bias = L.bool("use_bias", True)
    slots = [("kernel", (k, units))] + ([("bias", (units,))] if use_bias else [])
    w = b.weights(L, slots)
    ins = [x.name, b.const(L, "kernel", w["kernel"].T)]
    if use_bias:
        ins.append(b.const(L, "bias", w["bias"]))
    return [b.op_with_act("dense", ins, {}, L, x.shape[:-1] + (units,), L.get("activation", "linear"))]


def multi_head_attention(b, L, xs):
    """MultiHeadAttention(query, value[, key]) over [batch, length, features]: three projections, one
    ``attention`` node (softmax(q k^T / sqrt(key_dim)) v per head) and the output projection. Masks, causal
    masking, gates, other attention axes, value_dim != key_dim and output_shape are refused."""
    if len(xs) not in (2, 3):
        raise FormatError(f"layer '{L.name}' (MultiHeadAttention) takes query, value[, key]; the config gives "
                          f"{len(xs)} tensors")
    q, v = xs[0], xs[1]
    k = xs[2] if len(xs) == 3 else v
    for t in (q, k, v):
        rank_of(L, t, 3)
    b.check_plain_weights(L)
    H, dk = L.int("num_heads", minimum=1), L.int("key_dim", minimum=1)
    dv = L.get("value_dim")
    dv = dk if dv is None else L.int("value_dim", minimum=1)
    if dv != dk:
        raise UnsupportedError(f"layer '{L.name}' (MultiHeadAttention): value_dim {dv} != key_dim {dk}")
    if L.get("output_shape") is not None:
        raise UnsupportedError(f"layer '{L.name}' (MultiHeadAttention): output_shape is not supported")
    if L.get("attention_axes") not in (None, [1], [-2]):
        raise UnsupportedError(f"layer '{L.name}' (MultiHeadAttention): attention_axes {L.get('attention_axes')}")
    if L.bool("use_gate", False) or L.get("sliding_window") is not None:
        raise UnsupportedError(f"layer '{L.name}' (MultiHeadAttention): gated or sliding-window attention")
    use_bias = L.bool("use_bias", True)
    eq, ek, ev = (static_dim(L, t, -1, "feature dimension") for t in (q, k, v))
    if k.shape[1] != v.shape[1] and None not in (k.shape[1], v.shape[1]):
        raise FormatError(f"layer '{L.name}' (MultiHeadAttention): key and value lengths differ")

    def proj(x, e, sub, tag):
        w = b.weights(L, [("kernel", (e, H, dk))] + ([("bias", (H, dk))] if use_bias else []), sub=sub)
        ins = [x.name, b.const(L, f"{tag}/kernel", w["kernel"].reshape(e, H * dk).T)]
        if use_bias:
            ins.append(b.const(L, f"{tag}/bias", w["bias"].reshape(H * dk)))
        return b.node("dense", ins, {}, L, x.shape[:-1] + (H * dk,), tag=tag)

    qn = proj(q, eq, ("query_dense", "query"), "query")
    kn = proj(k, ek, ("key_dense", "key"), "key")
    vn = proj(v, ev, ("value_dense", "value"), "value")
    a = b.node("attention", [qn.name, kn.name, vn.name], {"heads": H, "scale": float(1.0 / np.sqrt(dk))}, L,
               qn.shape, tag="attention")
    w = b.weights(L, [("kernel", (H, dv, eq))] + ([("bias", (eq,))] if use_bias else []),
                  sub=("output_dense", "attention_output"))
    ins = [a.name, b.const(L, "output/kernel", w["kernel"].reshape(H * dv, eq).T)]
    if use_bias:
        ins.append(b.const(L, "output/bias", w["bias"]))
    return [b.node("dense", ins, {}, L, q.shape, final=True)]


def _conv(b, L, xs, rank, kind):
    """Conv1D/2D, DepthwiseConv1D/2D, SeparableConv1D/2D as IR conv2d nodes (1-D via [N, 1, W, C])."""
    x = one_input(L, xs)
    rank_of(L, x, rank + 2)
    channels_last(L)
    b.check_plain_weights(L)
    ks = L.ints("kernel_size", rank, minimum=1)
    st = L.ints("strides", rank, minimum=1, default=1)
    dl = L.ints("dilation_rate", rank, minimum=1, default=1)
    padding = L.str("padding", "valid").lower()
    if padding not in ("valid", "same") and not (padding == "causal" and rank == 1 and kind == "conv"):
        raise UnsupportedError(f"layer '{L.name}' ({L.cls}): padding='{padding}' is not supported")
    c = static_dim(L, x, -1, "channel dimension")
    use_bias = L.bool("use_bias", True)
    if kind == "conv":
        groups = L.int("groups", 1, minimum=1)
        filters = L.int("filters", minimum=1)
        if c % groups or filters % groups:
            raise FormatError(f"layer '{L.name}' ({L.cls}): groups={groups} does not divide channels {c} / "
                              f"filters {filters}")
        slots = [("kernel", tuple(ks) + (c // groups, filters))]
    elif kind == "depthwise":
        mult = L.int("depth_multiplier", 1, minimum=1)
        filters = c * mult
        slots = [("kernel", tuple(ks) + (c, mult))]
    else:  # separable
        mult = L.int("depth_multiplier", 1, minimum=1)
        filters = L.int("filters", minimum=1)
        slots = [("depthwise_kernel", tuple(ks) + (c, mult)), ("pointwise_kernel", (1,) * rank + (c * mult, filters))]
    if use_bias:
        slots.append(("bias", (filters,)))
    w = b.weights(L, slots)

    if rank == 1:
        x = to_nhwc(b, L, x)
        ks, st, dl = (1, ks[0]), (1, st[0]), (1, dl[0])
    kh, kw = ks
    n, h, wd, _ = x.shape
    if padding == "same":
        pt, pb = same_pads(L, h, kh, st[0], dl[0])
        pl, pr = same_pads(L, wd, kw, st[1], dl[1])
    elif padding == "causal":
        pt = pb = pr = 0
        pl = dl[1] * (kw - 1)
    else:
        pt = pb = pl = pr = 0
    oh = out_size(L, h, kh, st[0], dl[0], pt, pb)
    ow = out_size(L, wd, kw, st[1], dl[1], pl, pr)
    attrs = {"strides": list(st), "dilations": list(dl), "pads": [pt, pl, pb, pr]}
    act = L.get("activation", "linear")
    out_shape = (n, oh, ow, filters)

    if kind == "conv":
        kern = w["kernel"].reshape(kh, kw, c // groups, filters).transpose(3, 0, 1, 2)
        ins = [x.name, b.const(L, "kernel", kern)]
        attrs["groups"] = groups
    elif kind == "depthwise":
        # Keras output channel c*mult + m reads input channel c: IR groups = C, O = C*mult
        kern = w["kernel"].reshape(kh, kw, c, mult).transpose(2, 3, 0, 1).reshape(c * mult, kh, kw, 1)
        ins = [x.name, b.const(L, "kernel", kern)]
        attrs["groups"] = c
    else:
        dk = w["depthwise_kernel"].reshape(kh, kw, c, mult).transpose(2, 3, 0, 1).reshape(c * mult, kh, kw, 1)
        dw = b.node("conv2d", [x.name, b.const(L, "depthwise_kernel", dk)], dict(attrs, groups=c), L,
                    (n, oh, ow, c * mult), tag="depthwise")
        pk = w["pointwise_kernel"].reshape(c * mult, filters).T.reshape(filters, 1, 1, c * mult)
        ins = [dw.name, b.const(L, "pointwise_kernel", pk)]
        attrs = {}
    if use_bias:
        ins.append(b.const(L, "bias", w["bias"]))
    if rank == 1:
        steps = b.act_steps(act, L)
        fused = b.fusable(steps)
        y = b.node("conv2d", ins, dict(attrs, **(fused or {})), L, out_shape, tag="conv")
        y = from_nhwc(b, L, y, final=fused is not None or not steps)
        return [y if fused is not None else b.apply_steps(y, steps, L)]
    return [b.op_with_act("conv2d", ins, attrs, L, out_shape, act)]


def batch_norm(b, L, xs):
    x = one_input(L, xs)
    r = len(x.shape)
    axis = L.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if norm_axis(L, axis, r) != r - 1 or r < 2:
        raise UnsupportedError(f"layer '{L.name}' (BatchNormalization): axis {axis} is not the last "
                               "(channels-last) axis")
    if L.bool("renorm", False):
        raise UnsupportedError(f"layer '{L.name}' (BatchNormalization): renorm=True is not supported")
    c = static_dim(L, x, -1, "channel dimension")
    scale, center = L.bool("scale", True), L.bool("center", True)
    slots = ([("gamma", (c,))] if scale else []) + ([("beta", (c,))] if center else []) + \
        [("moving_mean", (c,)), ("moving_variance", (c,))]
    w = b.weights(L, slots)
    gamma = b.const(L, "gamma", w["gamma"] if scale else np.ones(c, np.float32))
    beta = b.const(L, "beta", w["beta"] if center else np.zeros(c, np.float32))
    ins = [x.name, gamma, beta, b.const(L, "moving_mean", w["moving_mean"]),
           b.const(L, "moving_variance", w["moving_variance"])]
    return [b.node("batch_norm", ins, {"epsilon": L.float("epsilon", 1e-3)}, L, x.shape, final=True)]


def layer_norm(b, L, xs):
    x = one_input(L, xs)
    r = len(x.shape)
    axes = L.get("axis", -1)
    axes = [axes] if not isinstance(axes, list) else axes
    if not axes:
        raise FormatError(f"layer '{L.name}' (LayerNormalization): empty axis list")
    axes = [norm_axis(L, a, r) for a in axes]
    if axes != list(range(r - len(axes), r)) or 0 in axes:
        raise UnsupportedError(f"layer '{L.name}' (LayerNormalization): axis {L.get('axis')} is not a run of "
                               "trailing axes")
    if L.bool("rms_scaling", False):
        raise UnsupportedError(f"layer '{L.name}' (LayerNormalization): rms_scaling=True is not supported")
    dims = tuple(static_dim(L, x, a) for a in axes)
    size = int(np.prod(dims))
    scale, center = L.bool("scale", True), L.bool("center", True)
    slots = ([("gamma", dims)] if scale else []) + ([("beta", dims)] if center else [])
    w = b.weights(L, slots)
    gamma = b.const(L, "gamma", w["gamma"].reshape(size) if scale else np.ones(size, np.float32))
    ins = [gamma] + ([b.const(L, "beta", w["beta"].reshape(size))] if center else [])
    eps = L.float("epsilon", 1e-3)
    if len(axes) == 1:
        return [b.node("layer_norm", [x.name] + ins, {"epsilon": eps}, L, x.shape, final=True)]
    lead = x.shape[:r - len(axes)]
    flat = b.node("reshape", [x.name], {"shape": [0] + [_dim_or_neg(d) for d in lead[1:]] + [size]}, L,
                  lead + (size,), tag="flatten")
    y = b.node("layer_norm", [flat.name] + ins, {"epsilon": eps}, L, flat.shape)
    return [b.node("reshape", [y.name], {"shape": [0] + [_dim_or_neg(d) for d in x.shape[1:]]}, L, x.shape,
                   final=True)]


def embedding(b, L, xs):
    x = one_input(L, xs)
    if L.bool("mask_zero", False):
        raise UnsupportedError(f"layer '{L.name}' (Embedding): mask_zero=True (masks change what later layers "
                               "compute) is not supported")
    b.check_plain_weights(L)
    v, d = L.int("input_dim", minimum=1), L.int("output_dim", minimum=1)
    w = b.weights(L, [("embeddings", (v, d))])
    return [b.node("embedding", [x.name, b.const(L, "embeddings", w["embeddings"])], {}, L, x.shape + (d,),
                   final=True)]


# ---- activations ----

def activation_layer(b, L, xs):
    x = one_input(L, xs)
    return [b.apply_steps(x, b.act_steps(L.get("activation", "linear"), L), L)]


def relu_layer(b, L, xs):
    x = one_input(L, xs)
    mv = L.get("max_value", None)
    slope = L.float("negative_slope", 0.0)
    thr = L.float("threshold", 0.0)
    if mv is not None:
        mv = L.float("max_value")
    if thr != 0.0:
        raise UnsupportedError(f"layer '{L.name}' (ReLU): threshold={thr} is not representable")
    if slope < 0:
        raise UnsupportedError(f"layer '{L.name}' (ReLU): negative_slope={slope} is not representable")
    if mv is None:
        steps = [("act", "leaky_relu", slope)] if slope else [("act", "relu", 0.0)]
    elif slope:
        raise UnsupportedError(f"layer '{L.name}' (ReLU): max_value together with negative_slope is not representable")
    elif mv == 6.0:
        steps = [("act", "relu6", 0.0)]
    elif mv > 0:
        # min(max(x, 0), m) = m/6 * relu6(6x/m)
        steps = [("mul", 6.0 / mv), ("act", "relu6", 0.0), ("mul", mv / 6.0)]
    else:
        raise UnsupportedError(f"layer '{L.name}' (ReLU): max_value={mv} is not representable")
    return [b.apply_steps(x, steps, L)]


def leaky_relu_layer(b, L, xs):
    x = one_input(L, xs)
    key = "negative_slope" if "negative_slope" in L.cfg else "alpha"  # Keras 3 / tf.keras 2
    return [b.apply_steps(x, [("act", "leaky_relu", L.float(key, 0.3))], L)]


def elu_layer(b, L, xs):
    x = one_input(L, xs)
    return [b.apply_steps(x, [("act", "elu", L.float("alpha", 1.0))], L)]


def softmax_layer(b, L, xs):
    x = one_input(L, xs)
    axis = L.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if not isinstance(axis, int):
        raise UnsupportedError(f"layer '{L.name}' (Softmax): softmax over several axes {axis} is not supported")
    axis = norm_axis(L, axis, len(x.shape))
    return [b.node("softmax", [x.name], {"axis": axis}, L, x.shape, final=True)]


def prelu_layer(b, L, xs):
    x = one_input(L, xs)
    shared = L.get("shared_axes", None)
    if shared is None:
        shared = []
    if isinstance(shared, int):
        shared = [shared]
    if not isinstance(shared, list) or not all(isinstance(a, int) and 1 <= a < len(x.shape) for a in shared):
        raise FormatError(f"layer '{L.name}' (PReLU): invalid shared_axes {L.get('shared_axes')!r}")
    shape = tuple(1 if (i + 1) in shared else static_dim(L, x, i + 1) for i in range(len(x.shape) - 1))
    alpha = b.weights(L, [("alpha", shape)])["alpha"]
    if all(d == 1 for d in shape[:-1]):
        alpha = alpha.reshape(shape[-1:])  # per channel (or one shared slope) over the last axis
    return [b.node("prelu", [x.name, b.const(L, "alpha", alpha)], {}, L, x.shape, final=True)]


# ---- pooling ----

def _pool(b, L, xs, rank, kind):
    x = one_input(L, xs)
    rank_of(L, x, rank + 2)
    channels_last(L)
    ps = L.ints("pool_size", rank, minimum=1, default=2)
    st = L.get("strides", None)
    st = ps if st is None else L.ints("strides", rank, minimum=1)
    padding = L.str("padding", "valid").lower()
    if padding not in ("valid", "same"):
        raise UnsupportedError(f"layer '{L.name}' ({L.cls}): padding='{padding}' is not supported")
    if rank == 1:
        x = to_nhwc(b, L, x)
        ps, st = (1, ps[0]), (1, st[0])
    n, h, w, c = x.shape
    if padding == "same":
        pt, pb = same_pads(L, h, ps[0], st[0], 1)
        pl, pr = same_pads(L, w, ps[1], st[1], 1)
    else:
        pt = pb = pl = pr = 0
    oh, ow = out_size(L, h, ps[0], st[0], 1, pt, pb), out_size(L, w, ps[1], st[1], 1, pl, pr)
    attrs = {"kernel": list(ps), "strides": list(st), "pads": [pt, pl, pb, pr]}
    if kind == "avg":
        attrs["count_include_pad"] = 0  # Keras/TF "same" averages over the real pixels only
    y = b.node(f"{kind}_pool", [x.name], attrs, L, (n, oh, ow, c), final=rank == 2)
    return [from_nhwc(b, L, y) if rank == 1 else y]


def _global_pool(b, L, xs, rank, kind):
    x = one_input(L, xs)
    rank_of(L, x, rank + 2)
    channels_last(L)
    keep = L.bool("keepdims", False)
    if rank == 2:
        shape = (x.shape[0], 1, 1, x.shape[3]) if keep else (x.shape[0], x.shape[3])
        return [b.node(f"global_{kind}_pool", [x.name], {"keepdims": int(keep)}, L, shape, final=True)]
    shape = (x.shape[0], 1, x.shape[2]) if keep else (x.shape[0], x.shape[2])
    op = "reduce_mean" if kind == "avg" else "reduce_max"
    return [b.node(op, [x.name], {"axes": [1], "keepdims": int(keep)}, L, shape, final=True)]


# ---- shape layers ----

def flatten(b, L, xs):
    x = one_input(L, xs)
    channels_last(L)
    if len(x.shape) <= 2:
        return [x]
    rest = x.shape[1:]
    size = None if any(d is None for d in rest) else int(np.prod(rest))
    return [b.node("flatten", [x.name], {"axis": 1}, L, (x.shape[0], size), final=True)]


def reshape(b, L, xs):
    x = one_input(L, xs)
    tgt = L.get("target_shape")
    if not isinstance(tgt, list) or not all(isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1)
                                            for d in tgt) or tgt.count(-1) > 1:
        raise FormatError(f"layer '{L.name}' (Reshape): invalid target_shape {tgt!r}")
    rest = x.shape[1:]
    out = list(tgt)
    if all(d is not None for d in rest):
        total = int(np.prod(rest))
        known = int(np.prod([d for d in tgt if d != -1]))
        if -1 in tgt:
            if known == 0 or total % known:
                raise FormatError(f"layer '{L.name}' (Reshape): cannot reshape {_fmt(x.shape)} to {tgt}")
            out[out.index(-1)] = total // known
        elif known != total:
            raise FormatError(f"layer '{L.name}' (Reshape): cannot reshape {_fmt(x.shape)} to {tgt}")
    shape = (x.shape[0],) + tuple(None if d == -1 else d for d in out)
    return [b.node("reshape", [x.name], {"shape": [0] + list(tgt)}, L, shape, final=True)]


def permute(b, L, xs):
    x = one_input(L, xs)
    dims = L.get("dims")
    r = len(x.shape)
    if not isinstance(dims, list) or sorted(dims) != list(range(1, r)):
        raise FormatError(f"layer '{L.name}' (Permute): dims {dims!r} is not a permutation of 1..{r - 1}")
    perm = [0] + list(dims)
    return [b.node("transpose", [x.name], {"perm": perm}, L, tuple(x.shape[p] for p in perm), final=True)]


def _pairs(L, key, rank):
    """Keras padding/cropping config -> [(begin, end)] * rank (accepts int, [a, b] and [[a, b], ..])."""
    v = L.get(key)
    if isinstance(v, int) and not isinstance(v, bool):
        v = [[v, v]] * rank
    elif isinstance(v, list) and rank == 1 and len(v) == 2 and all(isinstance(e, int) for e in v):
        v = [v]
    elif isinstance(v, list) and len(v) == rank and all(isinstance(e, int) for e in v):
        v = [[e, e] for e in v]
    if not (isinstance(v, list) and len(v) == rank and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(e, int) and not isinstance(e, bool) and e >= 0
                                                         for e in p) for p in v)):
        raise FormatError(f"layer '{L.name}' ({L.cls}): invalid {key} {L.get(key)!r}")
    return [tuple(p) for p in v]


def zero_padding(b, L, xs, rank):
    x = one_input(L, xs)
    rank_of(L, x, rank + 2)
    channels_last(L)
    pads = _pairs(L, "padding", rank)
    r = rank + 2
    begin = [0] + [p[0] for p in pads] + [0]
    end = [0] + [p[1] for p in pads] + [0]
    shape = (x.shape[0],) + tuple(None if d is None else d + p[0] + p[1] for d, p in zip(x.shape[1:-1], pads)) + \
        (x.shape[-1],)
    assert len(begin) == r
    return [b.node("pad", [x.name], {"pads": begin + end, "value": 0.0}, L, shape, final=True)]


def cropping(b, L, xs, rank):
    x = one_input(L, xs)
    rank_of(L, x, rank + 2)
    channels_last(L)
    crops = _pairs(L, "cropping", rank)
    axes, starts, ends, shape = [], [], [], [x.shape[0]]
    for i, (c0, c1) in enumerate(crops):
        d = static_dim(L, x, i + 1)
        if c0 + c1 >= d:
            raise FormatError(f"layer '{L.name}' ({L.cls}): cropping {crops} removes all of {_fmt(x.shape)}")
        axes.append(i + 1)
        starts.append(c0)
        ends.append(d - c1)
        shape.append(d - c0 - c1)
    shape.append(x.shape[-1])
    return [b.node("slice", [x.name], {"axes": axes, "starts": starts, "ends": ends}, L, tuple(shape), final=True)]


# ---- merging ----

def _merge(b, L, xs, op):
    if len(xs) < 2 and op != "concat":
        raise FormatError(f"layer '{L.name}' ({L.cls}) needs at least two inputs, the config gives {len(xs)}")
    if op == "sub" and len(xs) != 2:
        raise FormatError(f"layer '{L.name}' (Subtract) takes exactly two inputs, got {len(xs)}")
    shape = broadcast_shapes(L, [x.shape for x in xs])
    if op == "avg":
        acc = xs[0]
        for i, x in enumerate(xs[1:]):
            acc = b.node("add", [acc.name, x.name], {}, L, shape, tag=f"add{i}")
        k = b.const(L, "inv_count", np.array([1.0 / len(xs)], np.float32))
        return [b.node("mul", [acc.name, k], {}, L, shape, final=True)]
    acc = xs[0]
    for i, x in enumerate(xs[1:]):
        acc = b.node(op, [acc.name, x.name], {}, L, shape, final=i == len(xs) - 2, tag=f"{op}{i}")
    return [acc]


def concatenate(b, L, xs):
    if not xs:
        raise FormatError(f"layer '{L.name}' (Concatenate) has no inputs")
    r = len(xs[0].shape)
    if any(len(x.shape) != r for x in xs):
        raise FormatError(f"layer '{L.name}' (Concatenate): inputs of different ranks")
    axis = norm_axis(L, L.get("axis", -1), r)
    if axis == 0:
        raise UnsupportedError(f"layer '{L.name}' (Concatenate): concatenation along the batch axis")
    shape = list(xs[0].shape)
    for i in range(1, r):
        dims = [x.shape[i] for x in xs]
        if i == axis:
            shape[i] = None if None in dims else sum(dims)
        else:
            known = {d for d in dims if d is not None}
            if len(known) > 1:
                raise FormatError(f"layer '{L.name}' (Concatenate): shapes {[_fmt(x.shape) for x in xs]} differ "
                                  f"outside axis {axis}")
            shape[i] = known.pop() if known else None
    if len(xs) == 1:
        return [xs[0]]
    return [b.node("concat", [x.name for x in xs], {"axis": axis}, L, tuple(shape), final=True)]


# ---- preprocessing ----

def rescaling(b, L, xs):
    x = one_input(L, xs)
    scale, offset = L.floats_or_float("scale", 1.0), L.floats_or_float("offset", 0.0)
    y = x
    steps = []
    if not (scale.size == 1 and scale.item() == 1.0):
        steps.append(("mul", scale))
    if not (offset.size == 1 and offset.item() == 0.0):
        steps.append(("add", offset))
    if not steps:
        return [x]
    for i, (op, v) in enumerate(steps):
        v = v.reshape(1) if v.ndim == 0 else v
        _check_bcast(L, v, x.shape)
        y = b.node(op, [y.name, b.const(L, op, v.astype(np.float32))], {}, L, x.shape, final=i == len(steps) - 1)
    return [y]


def _check_bcast(L, v, shape):
    if v.ndim > len(shape) or any(a != 1 and b_ is not None and a != b_ for a, b_ in
                                   zip(v.shape[::-1], shape[::-1])):
        raise FormatError(f"layer '{L.name}' ({L.cls}): a constant of shape {v.shape} does not broadcast against "
                          f"{_fmt(shape)}")


def normalization(b, L, xs):
    """y = (x - mean) / max(sqrt(var), 1e-7)   (invert: y = mean + x * max(sqrt(var), 1e-7))."""
    x = one_input(L, xs)
    r = len(x.shape)
    axes = L.get("axis", -1)
    if axes is None:
        axes = []
    axes = [axes] if isinstance(axes, int) else axes
    if not isinstance(axes, list):
        raise FormatError(f"layer '{L.name}' (Normalization): invalid axis {axes!r}")
    axes = sorted(norm_axis(L, a, r) for a in axes)
    # mean/variance are stored with the kept axes' sizes, broadcast as 1 elsewhere (batch excluded)
    bshape = tuple(static_dim(L, x, i) if i in axes else 1 for i in range(1, r))
    wshape = tuple(static_dim(L, x, i) for i in axes)
    if L.get("mean") is not None:
        mean = np.asarray(L.floats_or_float("mean", 0.0), np.float64)
        var = np.asarray(L.floats_or_float("variance", 1.0), np.float64)
        mean = np.broadcast_to(mean, bshape) if mean.size in (1, int(np.prod(bshape))) else None
        var = np.broadcast_to(var, bshape) if var.size in (1, int(np.prod(bshape))) else None
        if mean is None or var is None:
            raise FormatError(f"layer '{L.name}' (Normalization): mean/variance do not match the input shape")
    else:
        w = b.weights(L, [("mean", wshape), ("variance", wshape), ("count", ())])
        mean = w["mean"].astype(np.float64).reshape(bshape)
        var = w["variance"].astype(np.float64).reshape(bshape)
    std = np.maximum(np.sqrt(np.maximum(var, 0.0)), 1e-7)
    squeeze = lambda a: a.reshape(a.shape[-1:]) if all(d == 1 for d in a.shape[:-1]) else a  # noqa: E731
    if L.bool("invert", False):
        y = b.node("mul", [x.name, b.const(L, "std", squeeze(std).astype(np.float32))], {}, L, x.shape, tag="scale")
        return [b.node("add", [y.name, b.const(L, "mean", squeeze(mean).astype(np.float32))], {}, L, x.shape,
                       final=True)]
    y = b.node("sub", [x.name, b.const(L, "mean", squeeze(mean).astype(np.float32))], {}, L, x.shape, tag="center")
    return [b.node("mul", [y.name, b.const(L, "inv_std", squeeze(1.0 / std).astype(np.float32))], {}, L, x.shape,
                   final=True)]


def noop(b, L, xs):
    x = one_input(L, xs)
    return [x]


CONVERTERS = {
    "Dense": dense,
    "Conv1D": lambda b, L, xs: _conv(b, L, xs, 1, "conv"),
    "Conv2D": lambda b, L, xs: _conv(b, L, xs, 2, "conv"),
    "DepthwiseConv1D": lambda b, L, xs: _conv(b, L, xs, 1, "depthwise"),
    "DepthwiseConv2D": lambda b, L, xs: _conv(b, L, xs, 2, "depthwise"),
    "SeparableConv1D": lambda b, L, xs: _conv(b, L, xs, 1, "separable"),
    "SeparableConv2D": lambda b, L, xs: _conv(b, L, xs, 2, "separable"),
    "BatchNormalization": batch_norm,
    "LayerNormalization": layer_norm,
    "Embedding": embedding,
    "Activation": activation_layer,
    "ReLU": relu_layer,
    "LeakyReLU": leaky_relu_layer,
    "ELU": elu_layer,
    "PReLU": prelu_layer,
    "Softmax": softmax_layer,
    "MaxPooling1D": lambda b, L, xs: _pool(b, L, xs, 1, "max"),
    "MaxPooling2D": lambda b, L, xs: _pool(b, L, xs, 2, "max"),
    "AveragePooling1D": lambda b, L, xs: _pool(b, L, xs, 1, "avg"),
    "AveragePooling2D": lambda b, L, xs: _pool(b, L, xs, 2, "avg"),
    "GlobalAveragePooling1D": lambda b, L, xs: _global_pool(b, L, xs, 1, "avg"),
    "GlobalAveragePooling2D": lambda b, L, xs: _global_pool(b, L, xs, 2, "avg"),
    "GlobalMaxPooling1D": lambda b, L, xs: _global_pool(b, L, xs, 1, "max"),
    "GlobalMaxPooling2D": lambda b, L, xs: _global_pool(b, L, xs, 2, "max"),
    "Flatten": flatten,
    "Reshape": reshape,
    "Permute": permute,
    "ZeroPadding1D": lambda b, L, xs: zero_padding(b, L, xs, 1),
    "ZeroPadding2D": lambda b, L, xs: zero_padding(b, L, xs, 2),
    "Cropping1D": lambda b, L, xs: cropping(b, L, xs, 1),
    "Cropping2D": lambda b, L, xs: cropping(b, L, xs, 2),
    "Add": lambda b, L, xs: _merge(b, L, xs, "add"),
    "Subtract": lambda b, L, xs: _merge(b, L, xs, "sub"),
    "Multiply": lambda b, L, xs: _merge(b, L, xs, "mul"),
    "Average": lambda b, L, xs: _merge(b, L, xs, "avg"),
    "Concatenate": concatenate,
    "Rescaling": rescaling,
    "Normalization": normalization,
    "MultiHeadAttention": multi_head_attention,
    **{c: noop for c in NOOP_CLASSES},
}

# Keras 2 / 3 aliases of the same classes
CONVERTERS["Convolution1D"] = CONVERTERS["Conv1D"]
CONVERTERS["Convolution2D"] = CONVERTERS["Conv2D"]
CONVERTERS["SeparableConvolution2D"] = CONVERTERS["SeparableConv2D"]
CONVERTERS["MaxPool1D"] = CONVERTERS["MaxPooling1D"]
CONVERTERS["MaxPool2D"] = CONVERTERS["MaxPooling2D"]
CONVERTERS["AvgPool1D"] = CONVERTERS["AveragePooling1D"]
CONVERTERS["AvgPool2D"] = CONVERTERS["AveragePooling2D"]
CONVERTERS["GlobalAvgPool1D"] = CONVERTERS["GlobalAveragePooling1D"]
CONVERTERS["GlobalAvgPool2D"] = CONVERTERS["GlobalAveragePooling2D"]
CONVERTERS["GlobalMaxPool1D"] = CONVERTERS["GlobalMaxPooling1D"]
CONVERTERS["GlobalMaxPool2D"] = CONVERTERS["GlobalMaxPooling2D"]

# What each activation name computes, as steps the builder emits:
# ("act", ir_name, alpha) | ("softmax", axis) | ("mul", scalar). ``None`` = Keras 2 / 3 differ (see keras.py).
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805
ACTIVATIONS = {
    "linear": [],
    "relu": [("act", "relu", 0.0)],
    "relu6": [("act", "relu6", 0.0)],
    "sigmoid": [("act", "sigmoid", 0.0)],
    "tanh": [("act", "tanh", 0.0)],
    "gelu": [("act", "gelu", 0.0)],  # Keras' default approximate=False: the erf form
    "silu": [("act", "silu", 0.0)],
    "swish": [("act", "silu", 0.0)],
    "hard_silu": [("act", "hard_swish", 0.0)],
    "hard_swish": [("act", "hard_swish", 0.0)],
    "leaky_relu": [("act", "leaky_relu", 0.2)],  # keras.activations.leaky_relu default slope
    "elu": [("act", "elu", 1.0)],
    "selu": [("act", "elu", _SELU_ALPHA), ("mul", _SELU_SCALE)],
    "softmax": [("softmax", -1)],
    "hard_sigmoid": None,
}


def hard_sigmoid_steps(keras_major):
    # Keras 3: relu6(x + 3) / 6 (the IR's hard_sigmoid); tf.keras 2: clip(0.2 x + 0.5, 0, 1) = that of 1.2 x
    if keras_major >= 3:
        return [("act", "hard_sigmoid", 0.0)]
    return [("mul", 1.2), ("act", "hard_sigmoid", 0.0)]


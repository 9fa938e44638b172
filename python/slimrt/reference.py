"""A numpy reference executor for the IR: plain, slow, float64, obviously right.

It is the executable specification of every op (see ir.OPS) and the oracle the
tests compare the C++ runtime and the importers against.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import InputError, UnsupportedError
from .ir import Model, check_feeds

_erf = np.vectorize(math.erf, otypes=[np.float64])


def activation(x, act, alpha=0.0):
    x = np.asarray(x, dtype=np.float64)
    if act == "none":
        return x
    if act == "relu":
        return np.maximum(x, 0)
    if act == "relu6":
        return np.clip(x, 0, 6)
    if act == "leaky_relu":
        return np.where(x >= 0, x, alpha * x)
    if act == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if act == "tanh":
        return np.tanh(x)
    if act == "gelu":
        return 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    if act == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if act == "silu":
        return x / (1 + np.exp(-x))
    if act == "hard_swish":
        return x * np.clip(x + 3, 0, 6) / 6
    if act == "hard_sigmoid":
        return np.clip(x + 3, 0, 6) / 6
    if act == "elu":
        return np.where(x >= 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))
    raise UnsupportedError(f"unknown activation '{act}'")


def pool_out_size(size, k, s, p0, p1, ceil_mode, dil=1):
    """Output length of a pooling window (PyTorch rules, incl. ceil mode)."""
    eff = dil * (k - 1) + 1
    num = size + p0 + p1 - eff
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p0:
        out -= 1  # the last window must start inside the input or the left padding
    return max(out, 0)


def conv2d(x, w, b, strides, dilations, pads, groups):
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    y = np.zeros((n, oh, ow, o))
    for g in range(groups):
        xs = xp[..., g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
                y[..., g * og:(g + 1) * og] += np.einsum("nhwc,oc->nhwo", patch, ws[:, i, j, :])
    if b is not None:
        y += b
    return y


def pool2d(x, kind, kernel, strides, pads, ceil_mode, count_include_pad=1):
    n, h, w, c = x.shape
    kh, kw = kernel
    sh, sw = strides
    pt, pl, pb, pr = pads
    oh = pool_out_size(h, kh, sh, pt, pb, ceil_mode)
    ow = pool_out_size(w, kw, sw, pl, pr, ceil_mode)
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - pt, j * sw - pl
            h1, w1 = min(h0 + kh, h + pb), min(w0 + kw, w + pr)  # padded extent
            hs, ws_, he, we = max(h0, 0), max(w0, 0), min(h0 + kh, h), min(w0 + kw, w)
            win = x[:, hs:he, ws_:we, :]
            if kind == "max":
                y[:, i, j, :] = win.max(axis=(1, 2))
            else:
                div = (h1 - h0) * (w1 - w0) if count_include_pad else (he - hs) * (we - ws_)
                y[:, i, j, :] = win.sum(axis=(1, 2)) / div
    return y


def _reshape_target(shape_in, spec):
    out = [shape_in[i] if d == 0 else d for i, d in enumerate(spec)]
    if out.count(-1) > 1:
        raise InputError("reshape: more than one -1")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        total = int(np.prod(shape_in))
        if known == 0 or total % known:
            raise InputError(f"reshape: cannot reshape {tuple(shape_in)} to {spec}")
        out[out.index(-1)] = total // known
    return out


def run_node(node, args):
    op, a = node.op, node.attr
    x = args[0]
    if op == "dense":
        res = args[-1] if a("residual") else None
        rest = args[:-1] if a("residual") else args
        y = x @ args[1].T
        if len(rest) > 2:
            y = y + rest[2]
        if res is not None:
            y = y + res
        return activation(y, a("act"), a("alpha"))
    if op == "matmul":
        b = np.swapaxes(args[1], -1, -2) if a("trans_b") else args[1]
        return activation(np.matmul(x, b), a("act"), a("alpha"))
    if op == "conv2d":
        w = args[1]
        if w.ndim == 2:
            kh, kw = a("kernel")
            w = w.reshape(w.shape[0], kh, kw, -1)
        rest = args[:-1] if a("residual") else args
        y = conv2d(x, w, rest[2] if len(rest) > 2 else None, a("strides"), a("dilations"),
                   a("pads"), a("groups"))
        if a("residual"):
            y = y + args[-1]
        return activation(y, a("act"), a("alpha"))
    if op == "batch_norm":
        g, beta, mean, var = args[1:]
        return (x - mean) / np.sqrt(var + a("epsilon")) * g + beta
    if op == "activation":
        return activation(x, a("act"), a("alpha"))
    if op == "prelu":
        return np.where(x >= 0, x, args[1] * x)
    if op == "softmax":
        e = np.exp(x - x.max(axis=a("axis"), keepdims=True))
        return e / e.sum(axis=a("axis"), keepdims=True)
    if op == "max_pool":
        return pool2d(x, "max", a("kernel"), a("strides"), a("pads"), a("ceil_mode"))
    if op == "avg_pool":
        return pool2d(x, "avg", a("kernel"), a("strides"), a("pads"), a("ceil_mode"), a("count_include_pad"))
    if op == "global_avg_pool":
        return x.mean(axis=(1, 2), keepdims=bool(a("keepdims")))
    if op == "global_max_pool":
        return x.max(axis=(1, 2), keepdims=bool(a("keepdims")))
    if op == "reduce_mean":
        return x.mean(axis=tuple(a("axes")), keepdims=bool(a("keepdims")))
    if op == "reduce_max":
        return x.max(axis=tuple(a("axes")), keepdims=bool(a("keepdims")))
    if op == "flatten":
        ax = a("axis")
        return x.reshape(x.shape[:ax] + (-1,))
    if op == "reshape":
        return x.reshape(_reshape_target(x.shape, list(a("shape"))))
    if op == "transpose":
        return np.transpose(x, a("perm"))
    if op in ("add", "sub", "mul", "div"):
        return {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op](x, args[1])
    if op == "concat":
        return np.concatenate(args, axis=a("axis"))
    if op == "pad":
        p = list(a("pads"))
        r = x.ndim
        return np.pad(x, list(zip(p[:r], p[r:])), constant_values=a("value"))
    if op == "layer_norm":
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        y = (x - mu) / np.sqrt(var + a("epsilon")) * args[1]
        return y + args[2] if len(args) > 2 else y
    if op == "embedding":
        ids = np.asarray(x).astype(np.int64)
        table = args[1]
        if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            raise InputError(f"embedding: id out of range [0, {table.shape[0]})")
        return table[ids]
    if op == "slice":
        sl = [slice(None)] * x.ndim
        for ax, s, e in zip(a("axes"), a("starts"), a("ends")):
            sl[ax] = slice(s, e)
        return x[tuple(sl)]
    if op == "reshape_dims":
        refs, k, out = list(a("refs")), 0, []
        for j, d in enumerate(a("dims")):
            if d == -2:
                out.append(np.shape(args[refs[2 * k]])[refs[2 * k + 1]])
                k += 1
            else:
                out.append(d)
        return x.reshape(_reshape_target(x.shape, out))
    if op == "slice_like":
        sl = [slice(None)] * x.ndim
        for ax, s0, rax in zip(a("axes"), a("starts"), a("ref_axes")):
            n = np.shape(args[1])[rax]
            if s0 + n > x.shape[ax]:
                raise InputError(f"slice_like: length {n} exceeds the {x.shape[ax] - s0} available along axis {ax} "
                                 f"of {tuple(x.shape)}")
            sl[ax] = slice(s0, s0 + n)
        return x[tuple(sl)]
    if op == "scaled_masked_softmax":
        v = x * a("scale") + (args[1] if len(args) > 1 else 0.0)
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if op == "attention":
        q, k, v = args[:3]
        h = a("heads")
        b, sq, e = q.shape
        split = lambda t: t.reshape(t.shape[0], t.shape[1], h, e // h).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        if a("int8"):  # kernels/attn/attn.h: codes per token (q, k), per channel (v), per row (probabilities)
            cq, sq_ = _sym_codes(q, -1, 127)
            ck, sk_ = _sym_codes(k, -1, 127)
            s = (cq @ ck.transpose(0, 1, 3, 2)) * (sq_ * sk_.transpose(0, 1, 3, 2)) * a("scale")
        else:
            s = q @ k.transpose(0, 1, 3, 2) * a("scale")
        if len(args) > 3:
            s = s + args[3]
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        p = p / p.sum(axis=-1, keepdims=True)
        if a("int8"):
            cp, sp_ = _sym_codes(p, -1, 255)
            cv, sv_ = _sym_codes(v, -2, 127)
            y = (cp @ cv) * (sp_ * sv_)
        else:
            y = p @ v
        return y.transpose(0, 2, 1, 3).reshape(b, sq, e)
    if op in _QUANT_OPS:
        return _run_quant(op, a, args)
    raise UnsupportedError(f"reference executor has no op '{op}'")


def _sym_codes(x, axis, levels):
    """Symmetric integer codes of x along ``axis`` (levels 127: int8, 255: u8 of x >= 0): codes
    rint(x * levels / max|x|) and the scale max|x| / levels (0 for an all-zero slice)."""
    m = np.abs(x).max(axis=axis, keepdims=True)
    inv = np.divide(levels, m, out=np.zeros_like(m), where=m > 0)
    return np.rint(x * inv), m / levels


def run_reference(model: Model, feeds) -> list:
    """Runs ``model`` on ``feeds`` in float64; returns the outputs as float32 (ints stay ints)."""
    env = {}
    for k, v in check_feeds(model, feeds).items():
        env[k] = v.astype(np.float64) if v.dtype.kind == "f" else v
    for k, t in model.constants.items():
        d = t.to_dense()
        env[k] = d.astype(np.float64) if d.dtype.kind == "f" else d
    for node in model.nodes:
        y = run_node(node, [env[i] for i in node.inputs])
        env[node.outputs[0]] = y
    outs = []
    for o in model.outputs:
        v = np.asarray(env[o])
        outs.append(v.astype(np.float32) if v.dtype.kind == "f" else v)
    return outs


# ---------------------------------------------------------------- static int8 activation chains
_QUANT_OPS = ("quantize", "dequantize", "qdense", "qconv2d", "qmax_pool", "qglobal_avg_pool", "qadd", "qactivation")


def quantize_u8(x, scale, zero_point):
    """q = clip(rint(x / scale) + zero_point, 0, 255) as uint8 (float64 math; the runtime multiplies by
    1/scale in float32, so a value within float rounding of a .5 tie may land one code away)."""
    x = np.asarray(x, dtype=np.float64)
    return np.clip(np.rint(x / scale) + zero_point, 0, 255).astype(np.uint8)


def dequantize_u8(q, scale, zero_point):
    return (np.asarray(q).astype(np.float64) - zero_point) * scale


def _q_out(y, a):
    """uint8 requantized with (out_scale, out_zero) when out_scale > 0, else float."""
    return quantize_u8(y, a("out_scale"), a("out_zero")) if a("out_scale") > 0 else y


def _run_quant(op, a, args):
    x = args[0]
    if op == "quantize":
        return quantize_u8(x, a("scale"), a("zero_point"))
    if op == "dequantize":
        return dequantize_u8(x, a("scale"), a("zero_point"))
    if op in ("qdense", "qconv2d"):
        xf = dequantize_u8(x, a("x_scale"), a("x_zero"))
        res = None
        rest = list(args)
        if a("residual"):
            r = rest.pop()
            res = dequantize_u8(r, a("res_scale"), a("res_zero")) if np.asarray(r).dtype == np.uint8 else r
        w = rest[1]
        b = rest[2] if len(rest) > 2 else None
        if op == "qdense":
            y = xf @ w.T + (0.0 if b is None else b)
        else:
            y = conv2d(xf, w, b, a("strides"), a("dilations"), a("pads"), a("groups"))
        if res is not None:
            y = y + res
        return _q_out(activation(y, a("act"), a("alpha")), a)
    if op == "qmax_pool":
        return pool2d(np.asarray(x, dtype=np.float64), "max", a("kernel"), a("strides"), a("pads"),
                      a("ceil_mode")).astype(np.uint8)
    if op == "qglobal_avg_pool":
        y = dequantize_u8(x, a("x_scale"), a("x_zero")).mean(axis=(1, 2), keepdims=bool(a("keepdims")))
        return _q_out(y, a)
    if op == "qadd":
        y = dequantize_u8(x, a("a_scale"), a("a_zero")) + dequantize_u8(args[1], a("b_scale"), a("b_zero"))
        return _q_out(activation(y, a("act"), a("alpha")), a)
    if op == "qactivation":
        y = activation(dequantize_u8(x, a("x_scale"), a("x_zero")), a("act"), a("alpha"))
        return quantize_u8(y, a("out_scale"), a("out_zero"))
    raise UnsupportedError(f"reference executor has no op '{op}'")

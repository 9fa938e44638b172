"""Compression passes: pruning, weight sharing, int8 / log2 quantization, activation calibration.

``compress(model, ...)`` returns a new model whose ``dense``, ``conv2d`` and
``matmul``-with-constant weights are stored in the formats of
``slimrt.formats`` that the kernels execute directly:

============================ ===============================================
recipe                       weight format
============================ ===============================================
quant="int8"                 QInt8, per output channel (axis 0)
quant="log2"                 Log2 at ``log2_bits``, per output channel
share=k                      Codebook (k entries, ceil(log2 k)-bit indices)
share=k, quant="int8"        Codebook whose entries lie on an int8 grid
prune (any mode)             CSR [N, K]; values in one of the above (or fp32),
                             per-channel values are per CSR row
============================ ===============================================

A weight matrix is [N, K] = [out, in]. Conv weights [O, KH, KW, Cg] are
compressed as the matrix [O, KH*KW*Cg]: non-sparse formats keep the 4-D shape;
a pruned conv weight is a 2-D CSR [O, KH*KW*Cg] and its conv2d node gets the
attribute ``kernel = [KH, KW]`` (Cg = cols / (KH*KW)). A matmul whose constant
``b`` is [K, N] (``trans_b = 0``) gets ``b`` transposed to [N, K] and
``trans_b = 1`` first, so that its output channels are rows too.

By default the graph optimizer runs first (``optimize=True`` in the recipe), so
batch norms are folded into the weights *before* they are compressed: what is
compressed is what runs.
"""
from __future__ import annotations

import json
import zlib

import numpy as np

from ..errors import CompressionError
from ..formats import CSR, Codebook, Dense, Log2, QInt8, best_index_bits
from ..ir import Model
from .calib import calibrate
from .prune import csr_layout, global_masks, index_dtype, magnitude_mask, nm_mask
from .quant import quantize_int8, quantize_log2

# metadata key: names of codebook weights whose table lies on a per-channel int8 grid (share + int8)
INT8_CODEBOOKS_KEY = "int8_codebooks"
from .recipe import LayerPlan, Recipe
from .report import format_name, format_table, report
from .share import index_bits, kmeans_1d, share_values

__all__ = ["compress", "decode", "Recipe", "report", "format_table", "format_name", "calibrate", "weight_refs",
           "kmeans_1d"]

WEIGHT_OPS = ("dense", "conv2d", "matmul", "embedding")


class WeightRef:
    """A compressible weight: its constant and the nodes that read it."""

    def __init__(self, weight, nodes):
        self.weight = weight
        self.nodes = list(nodes)

    @property
    def op(self):
        return self.nodes[0].op

    @property
    def names(self):
        return [n.name for n in self.nodes] + [self.weight]

    def __repr__(self):
        return f"WeightRef({self.weight!r}, {[n.name for n in self.nodes]})"


def weight_refs(model: Model) -> list:
    """The weights ``compress`` acts on, in node order: input 1 of dense / conv2d, the constant
    2-D ``b`` of a matmul whose ``a`` is not constant, and embedding tables (int8 only)."""
    refs = {}
    for n in model.nodes:
        if n.op not in WEIGHT_OPS or len(n.inputs) < 2:
            continue
        w = n.inputs[1]
        if w not in model.constants:
            continue
        if n.op == "matmul" and (n.inputs[0] in model.constants or len(model.constants[w].shape) != 2):
            continue
        refs.setdefault(w, []).append(n)
    return [WeightRef(w, nodes) for w, nodes in refs.items()]


def _transpose_matmul_weights(m: Model):
    """matmul(a, b[K, N] constant) -> matmul(a, b^T[N, K], trans_b=1)."""
    uses = {}
    for n in m.nodes:
        for i, v in enumerate(n.inputs):
            uses.setdefault(v, []).append((n, i))
    done = {}
    for n in m.nodes:
        if n.op != "matmul" or n.attr("trans_b") or n.inputs[1] not in m.constants or n.inputs[0] in m.constants:
            continue
        b = n.inputs[1]
        t = m.constants[b]
        if len(t.shape) != 2 or not isinstance(t, Dense):
            continue
        if b not in done:
            only_here = all(u.op == "matmul" and i == 1 and not u.attr("trans_b") for u, i in uses[b])
            data = np.ascontiguousarray(t.data.T)
            if only_here:
                m.constants[b] = Dense(data)
                done[b] = b
            else:
                done[b] = m.add_constant(b + ".T", data)
        n.inputs[1] = done[b]
        n.attrs["trans_b"] = 1


def _build_recipe(recipe, prune, share, quant, per_layer, seed, options) -> Recipe:
    r = Recipe.from_json(recipe) if recipe is not None else Recipe()
    d = r.to_dict()
    if isinstance(prune, dict):
        for k, v in prune.items():
            key = {"sparsity": "prune", "mode": "prune_mode"}.get(k, k)
            if key not in ("prune", "prune_mode", "n_m"):
                raise CompressionError(f"prune: unknown option '{k}' (use sparsity, mode, n_m)")
            d[key] = v
    elif prune is not None:
        d["prune"] = prune
    if isinstance(share, dict):
        for k, v in share.items():
            key = {"k": "share", "mode": "share_mode", "init": "share_init", "iters": "kmeans_iters",
                   "tol": "kmeans_tol"}.get(k, k)
            if key not in ("share", "share_mode", "share_init", "kmeans_iters", "kmeans_tol"):
                raise CompressionError(f"share: unknown option '{k}' (use k, mode, init, iters, tol)")
            d[key] = v
    elif share is not None:
        d["share"] = share
    if quant is not None:
        d["quant"] = quant
    if per_layer is not None:
        if not isinstance(per_layer, dict):
            raise CompressionError("per_layer must map layer or weight names to override dicts")
        d["per_layer"] = {**d["per_layer"], **per_layer}
    if seed is not None:
        d["seed"] = seed
    for k, v in options.items():
        key = "calib" if k == "calib_method" else k
        if key not in d or key == "per_layer":
            raise CompressionError(f"compress: unknown option '{k}'")
        d[key] = v
    return Recipe.from_dict(d)


def _embedding_plan(plan):
    """Embedding tables take int8 per row (the runtime gathers int8 rows and scales them) and nothing
    else: pruning, sharing and log2 leave them fp32."""
    from .recipe import LayerPlan

    if plan.skip or plan.quant != "int8":
        return LayerPlan(skip=True)
    return LayerPlan(quant="int8")


def _check_names(r: Recipe, refs):
    known = set()
    for ref in refs:
        known.update(ref.names)
    bad = sorted(set(r.per_layer) - known)
    if bad:
        raise CompressionError(f"per_layer names {bad} match no compressible layer or weight; known: {sorted(known)}")


def _encode_values(vals, ch, nch, plan: LayerPlan, r: Recipe, rng, shape, channels, name):
    """A flat array of weights (channel of each in ``ch``) in the plan's value format, with ``shape``."""
    if plan.share is not None:
        idx, lut, axis = share_values(vals, ch, nch, plan.share, plan.share_mode, plan.share_init, rng,
                                      int8=plan.quant == "int8", max_iter=r.kmeans_iters, tol=r.kmeans_tol,
                                      name=name)
        return Codebook(idx.astype(np.uint8), lut, index_bits(plan.share), axis=axis, shape=shape,
                        channels=channels if axis == 0 else None)
    if plan.quant == "int8":
        q, s = quantize_int8(vals, ch, nch)
        return QInt8(q, s, axis=0, shape=shape, channels=channels)
    if plan.quant == "log2":
        codes, s = quantize_log2(vals, ch, nch, plan.log2_bits)
        return Log2(codes, s, plan.log2_bits, axis=0, shape=shape, channels=channels)
    return Dense(np.asarray(vals, dtype=np.float32).reshape(shape))


def _encode(w2d, shape, plan, mask, r, rng, name):
    n, k = w2d.shape
    if mask is None:
        ch = np.repeat(np.arange(n), k)
        return _encode_values(w2d.ravel(), ch, n, plan, r, rng, tuple(shape), None, name)
    indptr, rows, cols = csr_layout(mask)
    values = _encode_values(w2d[rows, cols], rows, n, plan, r, rng, (rows.size,), n, name)
    bits = best_index_bits(indptr, cols, k) if r.csr_index == "auto" else 0
    return CSR((n, k), indptr, cols.astype(index_dtype(k)), values, index_bits=bits)


def _progress(items, on, desc):
    if on:
        try:
            from tqdm import tqdm

            return tqdm(items, desc=desc, unit="layer")
        except ImportError:
            pass
    return items


def compress(model: Model, prune=None, share=None, quant=None, calib=None, per_layer=None, seed=None,
             progress=False, *, recipe=None, **options) -> Model:
    """A compressed copy of ``model`` (the input is left untouched).

    prune: sparsity in [0, 1) (or a dict ``{"sparsity", "mode", "n_m"}``); share: number of
    centroids 2..256 (or ``{"k", "mode", "init", "iters", "tol"}``); quant: None, "int8" or
    "log2"; calib: calibration inputs (an array for a one-input model, or {input name: array})
    -- when given, ``metadata["act_quant"]`` holds JSON ``{value: [scale, zero_point]}`` (uint8);
    per_layer: {node or weight name: {overrides}} (None skips the layer); seed: k-means++
    seed (default 0); recipe: a ``Recipe``, dict, JSON text or ``.json`` path that the other
    arguments override. Further recipe keys as keywords: prune_mode, n_m, share_mode,
    share_init, log2_bits, calib_method (minmax / percentile / entropy), percentile,
    calib_batch, kmeans_iters, kmeans_tol, optimize, csr_index, attention ("fp32" or "int8":
    both attention matrix products on int8 codes, see the ``attention`` op).
    """
    if isinstance(calib, str):
        raise CompressionError(f"calib takes calibration data (an array or {{input: array}}); pass the method as "
                               f"calib_method={calib!r}")
    r = _build_recipe(recipe, prune, share, quant, per_layer, seed, options)
    m = model.optimize() if r.optimize else model.copy()
    _transpose_matmul_weights(m)
    refs = weight_refs(m)
    _check_names(r, refs)
    plans = {ref.weight: _embedding_plan(r.plan(ref.names)) if ref.op == "embedding" else r.plan(ref.names)
             for ref in refs}
    mats = {}
    for ref in refs:
        if not plans[ref.weight].does_anything:
            continue
        t = m.constants[ref.weight]
        if not isinstance(t, Dense) or t.dtype.kind != "f":
            raise CompressionError(f"weight '{ref.weight}' is already stored as {format_name(t)}; compress the "
                                   f"fp32 model")
        if t.size == 0:
            raise CompressionError(f"weight '{ref.weight}' is empty")
        mats[ref.weight] = t.data.astype(np.float32).reshape(t.shape[0], -1)

    pool = [w for w in mats if plans[w].prunes and plans[w].prune_mode == "global"]
    masks = global_masks({w: mats[w] for w in pool}, float(r.prune)) if pool else {}
    int8_codebooks = []
    for ref in _progress([x for x in refs if x.weight in mats], progress, "compressing"):
        w, plan = ref.weight, plans[ref.weight]
        w2d = mats[w]
        name = f"layer '{ref.nodes[0].name}' (weight '{w}')"
        mask = None
        if plan.prunes:
            if plan.prune_mode == "n:m":
                mask = nm_mask(w2d, *plan.n_m)
            elif plan.prune_mode == "global":
                mask = masks[w]
            else:
                mask = magnitude_mask(w2d, float(plan.prune), name)
        rng = np.random.default_rng([int(r.seed) & 0xFFFFFFFF, zlib.crc32(w.encode())])
        shape = m.constants[w].shape
        t = _encode(w2d.astype(np.float64), shape, plan, mask, r, rng, name)
        m.constants[w] = t
        if isinstance(t, Codebook) and plan.quant == "int8":
            int8_codebooks.append(w)
        if isinstance(t, CSR) and len(shape) == 4:
            for node in ref.nodes:
                if node.op == "conv2d":
                    node.attrs["kernel"] = [int(shape[1]), int(shape[2])]
    attn = [n for n in m.nodes if n.op == "attention"]
    if r.attention == "int8" and not attn:
        raise CompressionError("attention='int8' asks for int8 attention, but the model has no attention node")
    for n in attn:  # both attention products on int8 codes (the attention op's int8 mode), or fp32
        n.attrs["int8"] = int(r.attention == "int8")
    if calib is not None:
        acts = calibrate(m, calib, r.calib, r.percentile, r.calib_batch, progress)
        m.metadata["act_quant"] = json.dumps(acts, sort_keys=True)
    m.metadata["compression"] = json.dumps(r.to_dict(), sort_keys=True)
    if int8_codebooks:  # the runtime may run these on the int8-table kernel (u8 activations)
        m.metadata[INT8_CODEBOOKS_KEY] = "\n".join(sorted(int8_codebooks))
    return m


def decode(model: Model) -> Model:
    """A copy with every constant decoded to dense fp32 (conv weights back to [O, KH, KW, Cg]):
    what the compressed model computes, runnable by ``run_reference`` and by any runtime."""
    m = model.copy()
    shapes = {}
    for n in m.nodes:
        if n.op == "conv2d" and "kernel" in n.attrs:
            kh, kw = (int(v) for v in n.attrs.pop("kernel"))
            if len(n.inputs) > 1:
                shapes[n.inputs[1]] = (kh, kw)
    for k, t in list(m.constants.items()):
        if isinstance(t, Dense):
            continue
        d = t.to_dense().astype(np.float32)
        if k in shapes and d.ndim == 2:
            kh, kw = shapes[k]
            d = d.reshape(d.shape[0], kh, kw, d.shape[1] // (kh * kw))
        m.constants[k] = Dense(d)
    return m

"""Slimmable models: several channel widths of one network in one ``Model``.

``slim(model, widths=(1.0, 0.75, 0.5, 0.25))`` ranks the channels of every prunable layer, reorders
the weights once so that the most important channels come first, and adds, for each narrower width,
its own nodes reading *prefixes* of the same constants through constant-only ``slice`` chains (the
runtime evaluates those once at load: a width costs no bytes in the file and no work per run).

Representation (``model.metadata["widths"]``, JSON, widest first)::

    [{"width": 0.75, "outputs": ["logits@w75"], "macs": 123, "bytes": 456, "accuracy": 0.9 | null}, ...]

Graph outputs: one per (width, original output), named ``<out>@w<percent>``. Node ``n`` of width w is
``n@w<percent>``; the full width keeps the original nodes (only its outputs are renamed). Nodes that
no pruned channel reaches are shared by all widths.

Channel analysis (all feature maps channels-last):

* a *channel space* is a set of channels that must share one order and one width: the outputs of a
  ``conv2d`` (groups=1) or ``dense`` layer, joined across residual ``add``/``sub``/``mul``/``div``
  (both operands are ranked jointly) and carried through depthwise convolutions (output channel c =
  input channel c), batch norm, activations, pooling, global pooling, and channel-preserving
  reshapes/transposes;
* a ``concat`` on the channel axis keeps one prefix per part: the consumer's columns for width w are
  the union of the parts' prefixes (a ``concat`` of ``slice``s of the weight);
* ``flatten`` of an NHWC map feeding ``dense``: the dense columns are (h, w, c) with c innermost, so
  the weight is viewed as [N, H*W, C] and sliced on its last axis (``reshape -> slice -> reshape``,
  all on constants): exact, no copy in the file;
* fixed (never pruned): the model's inputs and outputs, grouped convolutions other than depthwise,
  softmax / layer norm / reductions over channels, ``matmul``, ``embedding``, slices and pads of the
  channel axis, reshapes that mix the channel axis, and anything this analysis does not know.

Width w keeps ``ceil(w * C)`` channels (at least 1) of every prunable space.

Compressed weights keep their format: rows (output channels) of CSR, int8, log2 and codebook
tensors with per-row scales / tables are prefixes (CSR: an indptr prefix); input channels of a CSR
matrix are *columns* ``s * C + c``: ``extract_width`` (and ``slim``'s reordering) rebuild the CSR
with the kept columns renumbered -- the width's CSR holds only its own nonzeros. In the multi-width
graph a CSR conv weight [O, KH*KW*C] is read as ``slice(reshape(W, [O, KH, KW, C]))`` and the width's
conv has no ``kernel`` attribute (the runtime decodes it at load).

BN folding: ``Model.optimize`` (and so ``save``) must not rewrite a constant that several nodes read
(the full-width conv reads the weight every width slices): see the module's test
``test_optimize_keeps_every_width``.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np

from .errors import CompressionError, InputError, UnsupportedError
from .formats import CSR, Codebook, Dense, Log2, QInt8, Tensor
from .ir import Model, Node
from .reference import run_node
from .shapes import infer_shapes

__all__ = ["slim", "extract_width", "widths_of", "width_outputs", "width_suffix", "model_cost",
           "from_torch_slimmable", "gather", "channel_spaces"]


# ============================================================== tensors: format-preserving gather
def _prod(s):
    return int(np.prod(s, dtype=np.int64)) if len(s) else 1


def gather(t: Tensor, view, idx, out_shape=None) -> Tensor:
    """``t`` viewed as ``view`` (row-major reshape of its logical shape), indexed by ``idx`` (one index
    array per view axis, None = all), reshaped to ``out_shape`` -- in the same storage format.

    Dense: numpy. int8 / log2 / codebook: the element codes are gathered, per-row scales / tables
    (axis 0) follow the kept rows (view axis 0 must then be the tensor's axis 0). CSR [R, K]: view
    axis 0 = rows, the other view axes split the columns; kept columns are renumbered in their new
    order and each row's entries re-sorted; ``out_shape`` must then be 2-D (rows, kept columns).
    """
    view = tuple(int(d) for d in view)
    if _prod(view) != t.size:
        raise InputError(f"cannot view a tensor of shape {t.shape} as {view}")
    idx = [np.arange(d, dtype=np.int64) if i is None else np.asarray(i, dtype=np.int64).ravel()
           for d, i in zip(view, idx)]
    for d, i in zip(view, idx):
        if i.size and (i.min() < 0 or i.max() >= d):
            raise InputError("gather index out of range")
    new_view = tuple(i.size for i in idx)
    out_shape = tuple(int(d) for d in (out_shape if out_shape is not None else new_view))
    if _prod(out_shape) != _prod(new_view):
        raise InputError(f"gathered {new_view} cannot be shaped {out_shape}")
    if isinstance(t, CSR):
        return _gather_csr(t, view, idx, out_shape)
    sel = np.arange(t.size, dtype=np.int64).reshape(view)[np.ix_(*idx)].ravel()
    if isinstance(t, Dense):
        return Dense(np.ascontiguousarray(t.data.ravel()[sel].reshape(out_shape)))
    axis = getattr(t, "axis", -1)
    if axis > 0 or (axis == 0 and (view[0] != t.shape[0] or t.channels is not None)):
        return Dense(np.ascontiguousarray(t.to_dense().ravel()[sel].reshape(out_shape)))  # not expressible
    rows = idx[0] if axis == 0 else None
    return _gather_flat(t, sel, rows, out_shape, channels=None)


def _gather_flat(t, sel, rows, shape, channels):
    """Elements ``sel`` of a non-CSR tensor; per-channel parameters follow ``rows`` (None: per tensor)."""
    if isinstance(t, Dense):
        return Dense(np.ascontiguousarray(t.data.ravel()[sel].reshape(shape)))
    axis = t.axis if rows is not None else -1
    if isinstance(t, QInt8):
        return QInt8(t.q.ravel()[sel], t.scale[rows] if rows is not None else t.scale, axis=axis, shape=shape,
                     channels=channels)
    if isinstance(t, Log2):
        return Log2(t.codes[sel], t.scale[rows] if rows is not None else t.scale, t.bits, axis=axis,
                    shape=shape, channels=channels)
    if isinstance(t, Codebook):
        return Codebook(t.indices[sel], t.lut[rows] if rows is not None else t.lut, t.bits, axis=axis,
                        shape=shape, channels=channels)
    raise UnsupportedError(f"cannot gather a {type(t).__name__} tensor")


def _gather_csr(t: CSR, view, idx, out_shape):
    rows_n, cols_n = t.shape
    if view[0] != rows_n:
        raise InputError("a CSR tensor's view must keep its rows on axis 0")
    colgrid = np.arange(cols_n, dtype=np.int64).reshape(view[1:])[np.ix_(*idx[1:])].ravel()
    if len(out_shape) != 2 or out_shape != (idx[0].size, colgrid.size):
        raise InputError(f"a gathered CSR tensor is 2-D ({idx[0].size}, {colgrid.size}), not {out_shape}")
    newcol = np.full(cols_n, -1, dtype=np.int64)
    newcol[colgrid] = np.arange(colgrid.size)
    indptr = t.indptr.astype(np.int64)
    rows = idx[0]
    starts, counts = indptr[rows], indptr[rows + 1] - indptr[rows]
    ent = (np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
           + np.arange(int(counts.sum()), dtype=np.int64))
    rowid = np.repeat(np.arange(rows.size), counts)
    cnew = newcol[t.indices.astype(np.int64)[ent]]
    keep = cnew >= 0
    ent, rowid, cnew = ent[keep], rowid[keep], cnew[keep]
    order = np.lexsort((cnew, rowid))
    ent, rowid, cnew = ent[order], rowid[order], cnew[order]
    new_indptr = np.concatenate([[0], np.cumsum(np.bincount(rowid, minlength=rows.size))]).astype(np.int64)
    v = t.values
    per_row = getattr(v, "axis", -1) >= 0
    values = _gather_flat(v, ent, rows if per_row else None, (ent.size,), rows.size if per_row else None)
    idx_dtype = t.indices.dtype if colgrid.size <= 65536 or t.indices.dtype == np.int32 else np.int32
    return CSR((rows.size, colgrid.size), new_indptr, cnew.astype(idx_dtype), values)


# ============================================================== channel analysis
class _Layout:
    """Channel structure of a value's last axis: segments (space id, size), repeated ``rep`` times
    with the channels innermost (rep > 1 after flattening an H x W x C map)."""

    __slots__ = ("segs", "rep")

    def __init__(self, segs, rep=1):
        self.segs = list(segs)
        self.rep = int(rep)

    @property
    def channels(self):
        return sum(n for _, n in self.segs)


class _Use:
    """Axis ``axis`` of constant ``const`` (viewed as ``view``) holds the channels of ``layout``."""

    __slots__ = ("const", "axis", "layout", "node", "role")

    def __init__(self, const, axis, layout, node, role):
        self.const, self.axis, self.layout, self.node, self.role = const, axis, layout, node, role


class _Analysis:
    def __init__(self, model: Model):
        self.m = model
        self.parent = []
        self.size = []
        self.fixed = []
        self.layouts = {}
        self.uses = []           # _Use
        self.views = {}          # const -> (view, kind)
        self.producers = []      # (space, const) of conv/dense output channels
        self.bns = []            # (layout, gamma const)
        self.depthwise = {}      # depthwise conv node name -> layout of its channels (groups follow the width)
        self.shapes = infer_shapes(model)
        self._run()

    # ---- union-find
    def new(self, n, fixed=False):
        self.parent.append(len(self.parent))
        self.size.append(int(n))
        self.fixed.append(bool(fixed))
        return len(self.parent) - 1

    def find(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.fixed[a] = self.fixed[a] or self.fixed[b]

    def fix(self, layout):
        if layout is not None:
            for s, _ in layout.segs:
                self.fixed[self.find(s)] = True

    def is_fixed(self, s):
        return self.fixed[self.find(s)]

    def fresh(self, value, fixed=True):
        shp = self.shapes.get(value)
        c = shp[-1] if shp else None
        self.layouts[value] = None if c is None else _Layout([(self.new(c, fixed), c)])

    # ---- helpers
    def const(self, name):
        return self.m.constants.get(name)

    def set_view(self, name, view, kind):
        old = self.views.get(name)
        if old is not None and old != (tuple(view), kind):
            return False
        self.views[name] = (tuple(view), kind)
        return True

    def chan_const(self, name, layout, node):
        """A constant operand broadcast against a value of ``layout``: per channel or scalar."""
        t = self.const(name)
        if t.size == 1:
            return True
        total = layout.channels * layout.rep
        if t.shape and t.shape[-1] == total and _prod(t.shape[:-1]) == 1:
            view = (layout.rep, layout.channels) if layout.rep > 1 else (layout.channels,)
            if not self.set_view(name, view, "chan"):
                return False
            self.uses.append(_Use(name, len(view) - 1, layout, node, "param"))
            return True
        return False

    def _run(self):
        m = self.m
        for i in m.inputs:
            self.fresh(i.name, fixed=True)
        for n in m.nodes:
            try:
                self._node(n)
            except _Fix:
                for i in n.inputs:
                    self.fix(self.layouts.get(i))
                for o in n.outputs:
                    self.fresh(o, fixed=True)
        for o in m.outputs:
            self.fix(self.layouts.get(o))
        # a constant read by two different nodes on its channel axes: fix everything it touches
        by_const = {}
        for u in self.uses:
            by_const.setdefault(u.const, set()).add(u.node.name)
        shared = {c for c, ns in by_const.items() if len(ns) > 1}
        readers = {}
        for n in m.nodes:
            for i in n.inputs:
                if i in m.constants:
                    readers.setdefault(i, set()).add(n.name)
        shared |= {c for c in by_const if len(readers.get(c, ())) > 1}
        for u in self.uses:
            if u.const in shared:
                self.fix(u.layout)

    def _node(self, n):
        m, op = self.m, n.op
        L = self.layouts.get(n.inputs[0]) if n.inputs else None
        out = n.outputs[0]
        if L is None and op not in ("concat",):
            raise _Fix
        if op in ("conv2d", "dense"):
            w = self.const(n.inputs[1])
            if w is None or any(i not in m.constants for i in n.inputs[2:]):
                raise _Fix
            if op == "conv2d":
                g = int(n.attr("groups"))
                if isinstance(w, CSR) or len(w.shape) == 2:
                    kh, kw = (int(v) for v in n.attrs.get("kernel", (0, 0)))
                    if kh * kw == 0 or w.shape[1] % (kh * kw):
                        raise _Fix
                    view, kind = (w.shape[0], kh * kw, w.shape[1] // (kh * kw)), "csrconv"
                else:
                    view, kind = tuple(w.shape), "same"
                if L.rep != 1:
                    raise _Fix
                O, cg = view[0], view[-1]
                if g == 1 and cg == L.channels:
                    if not self.set_view(n.inputs[1], view, kind):
                        raise _Fix
                    self.uses.append(_Use(n.inputs[1], len(view) - 1, L, n, "in"))
                    self._producer(n, O, view, kind, out)
                    return
                if g == L.channels and O == g and cg == 1:  # depthwise: channel c in, channel c out
                    if not self.set_view(n.inputs[1], view, kind):
                        raise _Fix
                    self.uses.append(_Use(n.inputs[1], 0, L, n, "dw"))
                    self.depthwise[n.name] = L
                    if len(n.inputs) > 2:
                        if not self.set_view(n.inputs[2], (O,), "chan"):
                            raise _Fix
                        self.uses.append(_Use(n.inputs[2], 0, L, n, "param"))
                    self.layouts[out] = L
                    return
                raise _Fix
            # dense
            if len(w.shape) != 2 or w.shape[1] != L.channels * L.rep:
                raise _Fix
            N = w.shape[0]
            if L.rep > 1:
                view, kind = (N, L.rep, L.channels), "rep"
            else:
                view, kind = (N, w.shape[1]), "same"
            if not self.set_view(n.inputs[1], view, kind):
                raise _Fix
            self.uses.append(_Use(n.inputs[1], len(view) - 1, L, n, "in"))
            self._producer(n, N, view, kind, out)
            return
        if op == "batch_norm":
            if not all(i in m.constants for i in n.inputs[1:]):
                raise _Fix
            for i in n.inputs[1:]:
                if not self.chan_const(i, L, n):
                    raise _Fix
            self.bns.append((L, n.inputs[1]))
            self.layouts[out] = L
            return
        if op in ("activation", "max_pool", "avg_pool", "global_avg_pool", "global_max_pool"):
            if op != "activation" and L.rep != 1:
                raise _Fix
            self.layouts[out] = L
            return
        if op == "prelu":
            if n.inputs[1] not in m.constants or not self.chan_const(n.inputs[1], L, n):
                raise _Fix
            self.layouts[out] = L
            return
        if op == "softmax":
            shp = self.shapes.get(n.inputs[0])
            if shp is None or int(n.attr("axis")) % len(shp) == len(shp) - 1:
                raise _Fix
            self.layouts[out] = L
            return
        if op in ("reduce_mean", "reduce_max"):
            shp = self.shapes.get(n.inputs[0])
            if shp is None or (len(shp) - 1) in {a % len(shp) for a in n.attr("axes")} or L.rep != 1:
                raise _Fix
            self.layouts[out] = L
            return
        if op == "flatten":
            shp = self.shapes.get(n.inputs[0])
            if (shp is None or int(n.attr("axis")) != 1 or L.rep != 1 or len(shp) < 2
                    or any(d is None for d in shp[1:-1])):
                raise _Fix
            self.layouts[out] = _Layout(L.segs, _prod(shp[1:-1]))
            return
        if op in ("reshape", "transpose", "pad", "slice"):
            si, so = self.shapes.get(n.inputs[0]), self.shapes.get(out)
            ok = si is not None and so is not None and L.rep == 1
            if ok and op == "reshape":
                ok = si[-1] == so[-1] == L.channels
            elif ok and op == "transpose":
                ok = list(n.attr("perm"))[-1] == len(si) - 1
            elif ok and op == "pad":
                p = list(n.attr("pads"))
                ok = len(p) == 2 * len(si) and p[len(si) - 1] == 0 and p[-1] == 0
            elif ok and op == "slice":
                ok = (len(si) - 1) not in {a % len(si) for a in n.attr("axes")}
            if not ok:
                raise _Fix
            self.layouts[out] = L
            return
        if op in ("add", "sub", "mul", "div"):
            a, b = n.inputs
            lays = []
            for v in (a, b):
                if v in m.constants:
                    continue
                lv = self.layouts.get(v)
                if lv is None:
                    raise _Fix
                shp = self.shapes.get(v)
                if shp is not None and shp and shp[-1] == 1 and lv.channels * lv.rep != 1:
                    continue  # broadcast along channels (e.g. a spatial mask): no channel tie
                lays.append(lv)
            if not lays:
                raise _Fix
            base = lays[0]
            for lv in lays[1:]:
                if lv.rep != base.rep or [s for _, s in lv.segs] != [s for _, s in base.segs]:
                    raise _Fix
                for (s1, _), (s2, _) in zip(base.segs, lv.segs):
                    self.union(s1, s2)
            for v in (a, b):
                if v in m.constants and not self.chan_const(v, base, n):
                    raise _Fix
            self.layouts[out] = base
            return
        if op == "concat":
            lays = [self.layouts.get(v) for v in n.inputs]
            if any(v in m.constants for v in n.inputs) or any(lv is None for lv in lays):
                raise _Fix
            shp = self.shapes.get(n.inputs[0])
            if shp is None or any(lv.rep != 1 for lv in lays):
                raise _Fix
            if int(n.attr("axis")) % len(shp) == len(shp) - 1:
                self.layouts[out] = _Layout([sg for lv in lays for sg in lv.segs])
                return
            base = lays[0]
            for lv in lays[1:]:
                if [s for _, s in lv.segs] != [s for _, s in base.segs]:
                    raise _Fix
                for (s1, _), (s2, _) in zip(base.segs, lv.segs):
                    self.union(s1, s2)
            self.layouts[out] = base
            return
        raise _Fix

    def _producer(self, n, count, view, kind, out):
        fixed = out in self.m.outputs
        s = self.new(count, fixed)
        lo = _Layout([(s, count)])
        self.uses.append(_Use(n.inputs[1], 0, lo, n, "out"))
        if len(n.inputs) > 2:
            if not self.set_view(n.inputs[2], (count,), "chan"):
                raise _Fix
            self.uses.append(_Use(n.inputs[2], 0, lo, n, "param"))
        self.producers.append((s, n.inputs[1], view))
        self.layouts[out] = lo


class _Fix(Exception):
    pass


def channel_spaces(model: Model) -> list:
    """The prunable channel groups of ``model``: a list of dicts {channels, layers} (layers: the
    conv/dense nodes producing them), for inspection and tests."""
    a = _Analysis(model)
    groups = {}
    for s, const, _ in a.producers:
        r = a.find(s)
        if a.fixed[r]:
            continue
        g = groups.setdefault(r, {"channels": a.size[r], "layers": []})
        for u in a.uses:
            if u.const == const and u.role == "out":
                g["layers"].append(u.node.name)
    return list(groups.values())


# ============================================================== width helpers
def width_suffix(w: float) -> str:
    p = float(w) * 100.0
    return f"@w{int(round(p))}" if abs(p - round(p)) < 1e-9 else f"@w{p:g}"


def _keep(c: int, w: float) -> int:
    return max(1, min(c, math.ceil(w * c - 1e-9)))


def widths_of(model: Model) -> list:
    """The parsed ``metadata["widths"]`` of a slimmable model (widest first); [] for a plain model."""
    raw = model.metadata.get("widths")
    if not raw:
        return []
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def _entry(model, width):
    ws = widths_of(model)
    if not ws:
        raise InputError("the model holds no widths (metadata['widths'] is missing): make it with slimrt.slim()")
    for e in ws:
        if abs(float(e["width"]) - float(width)) < 1e-9:
            return e
    raise InputError(f"width {width} is not in the model; it holds {[e['width'] for e in ws]}")


def width_outputs(model: Model, width: float) -> list:
    """Graph output names of one width."""
    return list(_entry(model, width)["outputs"])


# ============================================================== extraction
class _GView:
    """A value computed from one constant by reshape / slice / concat: gather(base, view, idx)."""

    __slots__ = ("base", "view", "idx", "final")

    def __init__(self, base, view, idx, final=None):
        self.base, self.view, self.idx, self.final = base, tuple(view), list(idx), final

    @property
    def shape(self):
        return self.final if self.final is not None else tuple(i.size for i in self.idx)

    def reshaped(self, shape):
        if _prod(shape) != _prod(self.shape) or self.final is not None:
            return None
        untouched = all(i.size == d and np.array_equal(i, np.arange(d)) for i, d in zip(self.idx, self.view))
        if untouched:
            return _GView(self.base, shape, [np.arange(d) for d in shape])
        return _GView(self.base, self.view, self.idx, tuple(shape))


def _resolve_shape(spec, shape_in):
    from .reference import _reshape_target

    return tuple(int(d) for d in _reshape_target(list(shape_in), list(spec)))


def _eval_const_node(n, gv):
    """Symbolic evaluation of a constant-only reshape / slice / concat; None when not expressible."""
    if n.op == "reshape":
        g = gv[n.inputs[0]]
        return g.reshaped(_resolve_shape(n.attr("shape"), g.shape))
    if n.op == "slice":
        g = gv[n.inputs[0]]
        if g.final is not None:
            return None
        idx = list(g.idx)
        for ax, s, e in zip(n.attr("axes"), n.attr("starts"), n.attr("ends")):
            ax = int(ax) % len(idx)
            idx[ax] = idx[ax][slice(int(s), int(e))]
        return _GView(g.base, g.view, idx)
    if n.op == "concat":
        gs = [gv[i] for i in n.inputs]
        g0 = gs[0]
        ax = int(n.attr("axis")) % len(g0.view)
        if any(g.final is not None or g.base != g0.base or g.view != g0.view for g in gs):
            return None
        for g in gs[1:]:
            if any(k != ax and not np.array_equal(a, b) for k, (a, b) in enumerate(zip(g.idx, g0.idx))):
                return None
        idx = list(g0.idx)
        idx[ax] = np.concatenate([g.idx[ax] for g in gs])
        return _GView(g0.base, g0.view, idx)
    return None


def _dead_code(m: Model):
    live = set(m.outputs)
    keep = []
    for n in reversed(m.nodes):
        if any(o in live for o in n.outputs):
            keep.append(n)
            live.update(n.inputs)
    m.nodes = keep[::-1]
    m.constants = {k: v for k, v in m.constants.items() if k in live}


def _rename(m: Model, old, new):
    for n in m.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
        n.outputs = [new if o == old else o for o in n.outputs]
    m.outputs = [new if o == old else o for o in m.outputs]


def extract_width(model: Model, width: float) -> Model:
    """A plain ``Model`` computing one width of a slimmable model: only that width's nodes, the
    constant slice chains evaluated into constants in their storage format (see ``gather``), and the
    outputs named as in the original model. Node names stay those of the multi-width model."""
    e = _entry(model, width)
    suffix = width_suffix(e["width"])
    m = Model(model.inputs, e["outputs"], [Node(n.op, list(n.inputs), list(n.outputs), dict(n.attrs), n.name)
                                          for n in model.nodes], dict(model.constants), dict(model.metadata))
    _dead_code(m)
    gv = {k: _GView(k, t.shape, [np.arange(d) for d in t.shape]) for k, t in m.constants.items()}
    keep_nodes = []
    for n in m.nodes:
        if n.inputs and all(i in gv for i in n.inputs) and n.op in ("reshape", "slice", "concat"):
            r = _eval_const_node(n, gv)
            if r is not None:
                gv[n.outputs[0]] = r
                continue
        if n.inputs and all(i in gv for i in n.inputs):  # other constant-only node: evaluate densely
            args = [_materialize(m, gv[i]).to_dense() for i in n.inputs]
            args = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in args]
            y = np.asarray(run_node(n, args))
            y = y.astype(np.float32) if y.dtype.kind == "f" else y
            m.constants[n.outputs[0]] = Dense(y)
            gv[n.outputs[0]] = _GView(n.outputs[0], y.shape, [np.arange(d) for d in y.shape])
            continue
        keep_nodes.append(n)
    m.nodes = keep_nodes
    used = {i for n in m.nodes for i in n.inputs}
    consts = {}
    for n in m.nodes:
        for j, i in enumerate(n.inputs):
            if i not in gv or i in consts:
                continue
            t = _materialize(m, gv[i])
            if isinstance(t, CSR) and n.op == "conv2d" and j == 1:
                shp = gv[i].shape
                if len(shp) == 4:
                    n.attrs["kernel"] = [int(shp[1]), int(shp[2])]
            consts[i] = t
    m.constants = {k: consts[k] for k in consts if k in used}
    for o in list(m.outputs):
        if o.endswith(suffix):
            _rename(m, o, o[: -len(suffix)])
    m.metadata = {k: v for k, v in m.metadata.items() if k != "widths"}
    m.metadata["width"] = json.dumps(float(e["width"]))
    return _validate(m)


def _materialize(m, g: _GView) -> Tensor:
    base = m.constants[g.base]
    untouched = (g.final is None and tuple(g.view) == tuple(base.shape)
                 and all(i.size == d and np.array_equal(i, np.arange(d)) for i, d in zip(g.idx, g.view)))
    if untouched:
        return base
    shape = g.shape
    if isinstance(base, CSR):
        new_view = tuple(i.size for i in g.idx)
        return gather(base, g.view, g.idx, (new_view[0], _prod(new_view[1:])))
    return gather(base, g.view, g.idx, shape)


# ============================================================== cost
def model_cost(model: Model) -> dict:
    """{"macs": multiply-accumulates per sample, "bytes": bytes of the constants the nodes read}
    of a plain model (CSR weights count their nonzeros)."""
    m = model.copy()
    for i in m.inputs:
        i.shape = tuple(1 if d is None else d for d in i.shape)
    shapes = infer_shapes(m)
    macs = 0
    for n in m.nodes:
        if n.op not in ("conv2d", "dense", "matmul"):
            continue
        so = shapes.get(n.outputs[0])
        w = m.constants.get(n.inputs[1])
        sw = shapes.get(n.inputs[1])
        if so is None or sw is None or any(d is None for d in so):
            continue
        if n.op == "conv2d":
            per_out = (w.nnz / w.shape[0]) if isinstance(w, CSR) else _prod(sw[1:])
            macs += int(round(_prod(so) * per_out))
        elif n.op == "dense":
            per_out = (w.nnz / w.shape[0]) if isinstance(w, CSR) else sw[1]
            macs += int(round(_prod(so) * per_out))
        else:
            k = sw[-1] if n.attr("trans_b") else sw[-2]
            macs += _prod(so) * int(k)
    used = {i for n in m.nodes for i in n.inputs}
    return {"macs": int(macs), "bytes": int(sum(t.nbytes for k, t in m.constants.items() if k in used))}


# ============================================================== slim
def _importance(a: _Analysis, criterion):
    imp = {}
    for s, const, view in a.producers:
        r = a.find(s)
        if a.fixed[r]:
            continue
        w = np.abs(a.m.constants[const].to_dense().astype(np.float64)).reshape(a.size[s], -1).sum(axis=1)
        mean = w.mean()
        imp[r] = imp.get(r, 0.0) + (w / mean if mean > 0 else w)
    if criterion == "bn":
        bn = {}
        for L, gamma in a.bns:
            g = np.abs(a.m.constants[gamma].to_dense().astype(np.float64)).reshape(L.rep, -1)[0]
            off = 0
            for s, n in L.segs:
                r = a.find(s)
                if not a.fixed[r]:
                    bn[r] = bn.get(r, 0.0) + g[off:off + n]
                off += n
        imp.update(bn)
    return imp


def _axis_index(a: _Analysis, layout: _Layout, chosen):
    """Index array over a channel axis of ``layout``: ``chosen(space, size)`` per segment."""
    parts, off = [], 0
    for s, n in layout.segs:
        parts.append(off + np.asarray(chosen(a.find(s), n), dtype=np.int64))
        off += n
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _const_axes(a: _Analysis):
    """const -> {view axis: layout} (first use per axis)."""
    out = {}
    for u in a.uses:
        out.setdefault(u.const, {}).setdefault(u.axis, u.layout)
    return out


def _final_shape(t, view, kind, new_view, consumer_op):
    if kind == "same":
        return tuple(new_view)
    if kind == "csrconv":
        kh_kw = view[1]
        kh = int(consumer_op.attrs["kernel"][0])
        return (new_view[0], kh, kh_kw // kh, new_view[2])
    if kind == "rep":
        return (new_view[0], new_view[1] * new_view[2])
    if kind == "chan":
        return tuple(t.shape[:-1]) + (_prod(new_view),)
    raise AssertionError(kind)


def _ranges(idx):
    """Split a sorted-within-runs index array into maximal runs of consecutive values: [(start, end)]."""
    out = []
    start = prev = None
    for v in idx.tolist():
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append((start, prev + 1))
            start = prev = v
    if start is not None:
        out.append((start, prev + 1))
    return out


def _bn_stats(plain: Model, feeds: dict, n: int, batch: int, progress=False) -> dict:
    """Switchable-BN calibration: runs ``plain`` on all of ``feeds`` node by node and, at every
    batch_norm with constant parameters, replaces its mean / var by the statistics of its input
    over the calibration set (before computing its output). {bn node name: (mean, var)}."""
    from .compress import decode

    dec = decode(plain)
    consts = {}
    for k, t in dec.constants.items():
        d = t.to_dense()
        consts[k] = d.astype(np.float64) if d.dtype.kind == "f" else d
    chunks = []
    for s in range(0, n, batch):
        env = {}
        for k, v in feeds.items():
            v = v[s:s + batch]
            env[k] = v.astype(np.float64) if v.dtype.kind == "f" else v
        chunks.append(env)
    last = {}
    for j, nd in enumerate(dec.nodes):
        for i in nd.inputs:
            last[i] = j
    outs = set(dec.outputs)
    stats = {}
    nodes = dec.nodes
    if progress:
        try:
            from tqdm import tqdm

            nodes = tqdm(nodes, desc="bn calibration", unit="node")
        except ImportError:
            pass
    for j, nd in enumerate(nodes):
        override = None
        if nd.op == "batch_norm" and all(i in consts for i in nd.inputs[1:]):
            xs = [env[nd.inputs[0]] for env in chunks]
            c = xs[0].shape[-1]
            cnt = sum(x.size // c for x in xs)
            mean = sum(x.reshape(-1, c).sum(axis=0) for x in xs) / cnt
            var = sum(((x.reshape(-1, c) - mean) ** 2).sum(axis=0) for x in xs) / cnt
            stats[nd.name] = (mean.astype(np.float32), var.astype(np.float32))
            override = (mean, var)
        for env in chunks:
            args = [env[i] if i in env else consts[i] for i in nd.inputs]
            if override is not None:
                args[3], args[4] = override
            env[nd.outputs[0]] = run_node(nd, args)
            for i in nd.inputs:
                if last.get(i) == j and i not in outs and i in env and i not in feeds:
                    del env[i]
    return stats


def _eval_accuracy(plain: Model, eval_data, batch=100):
    from .compress.report import run_model

    x, y = eval_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = run_model(plain, x, engine="auto", batch_size=batch)[0]
    return float(np.mean(np.argmax(out.reshape(len(out), -1), axis=-1) == np.asarray(y).ravel()))


def _check_widths(widths):
    ws = sorted({float(w) for w in widths}, reverse=True)
    if not ws:
        raise InputError("slim() needs at least one width")
    if any(not (0.0 < w <= 1.0) for w in ws):
        raise InputError(f"widths must lie in (0, 1], got {list(widths)}")
    if len({width_suffix(w) for w in ws}) != len(ws):
        raise InputError(f"widths {ws} are too close to name apart")
    return ws


def slim(model: Model, widths=(1.0, 0.75, 0.5, 0.25), calib=None, eval_data=None, criterion="l1",
         progress=False, calib_batch=64) -> Model:
    """A multi-width copy of ``model`` (see the module docstring); ``model`` is left untouched.

    criterion: "l1" (filter L1 norm, summed over the layers that share a channel group) or "bn"
    (|gamma| of the batch norms on the group; L1 where there is none). calib: calibration inputs
    (array or {input: array}): each narrower width gets its own batch-norm statistics measured on
    them (switchable BN); without it every width slices the full-width statistics. eval_data:
    ``(x, labels)``: top-1 accuracy per width in the metadata.
    """
    if criterion not in ("l1", "bn"):
        raise InputError(f"criterion must be 'l1' or 'bn', got {criterion!r}")
    if widths_of(model):
        raise InputError("the model is already slimmable (metadata['widths'] is set)")
    ws = _check_widths(widths)
    _validate(model)
    m = model.copy()
    a = _Analysis(m)
    imp = _importance(a, criterion)
    if not imp:
        raise UnsupportedError("the model has no prunable channels (every conv/dense output is fixed: "
                               "model outputs, grouped convolutions, or ops slim() does not follow)")
    perms = {r: np.argsort(-v, kind="stable") for r, v in imp.items()}
    axes = _const_axes(a)
    consumers = {}
    for u in a.uses:
        consumers.setdefault(u.const, u.node)

    # ---- 1. reorder: permute every constant axis that carries a prunable space
    for const, ax_layouts in axes.items():
        view, kind = a.views[const]
        t = m.constants[const]
        idx = [None] * len(view)
        changed = False
        for ax, L in ax_layouts.items():
            # on a (rep, C) view the permutation applies to the C axis, the same at every position
            ix = _axis_index(a, L, lambda r, n: perms.get(r, np.arange(n)) if not a.fixed[r] else np.arange(n))
            idx[ax] = ix
            changed = changed or not np.array_equal(ix, np.arange(ix.size))
        if changed:
            m.constants[const] = gather(t, view, idx, t.shape)

    # ---- 2. widths
    entries = []
    new_nodes = []
    orig_nodes = list(m.nodes)
    width_nodes = {}
    for w in ws:
        sfx = width_suffix(w)
        if w == 1.0:
            width_nodes[w] = None
            continue
        chains = {}
        chain_nodes = []
        for const, ax_layouts in axes.items():
            view, kind = a.views[const]
            t = m.constants[const]
            idx = [np.arange(d) for d in view]
            changed = False
            for ax, L in ax_layouts.items():
                ix = _axis_index(a, L, lambda r, n: np.arange(_keep(n, w) if not a.fixed[r] else n))
                idx[ax] = ix
                changed = changed or ix.size != view[ax]
            if not changed:
                continue
            cur = const
            name = const + sfx
            if view != tuple(t.shape):
                cur = _add(chain_nodes, m, "reshape", [cur], {"shape": list(view)}, f"{name}/view")
            cut = [ax for ax in sorted(ax_layouts) if idx[ax].size != view[ax]]
            single = [ax for ax in cut if len(_ranges(idx[ax])) == 1]
            if single:  # every axis kept as one run: one slice node
                rs = [_ranges(idx[ax])[0] for ax in single]
                cur = _add(chain_nodes, m, "slice", [cur], {"axes": single, "starts": [r[0] for r in rs],
                                                            "ends": [r[1] for r in rs]}, f"{name}/slice")
            for ax in cut:
                if ax in single:
                    continue
                parts = [_add(chain_nodes, m, "slice", [cur], {"axes": [ax], "starts": [s], "ends": [e]},
                              f"{name}/slice{ax}.{k}") for k, (s, e) in enumerate(_ranges(idx[ax]))]
                cur = _add(chain_nodes, m, "concat", parts, {"axis": ax}, f"{name}/concat{ax}")
            new_view = tuple(i.size for i in idx)
            final = _final_shape(t, view, kind, new_view, consumers[const])
            if final != new_view:
                cur = _add(chain_nodes, m, "reshape", [cur], {"shape": list(final)}, f"{name}/shape")
            chain_nodes[-1].outputs = [name]
            chain_nodes[-1].name = name
            chains[const] = name
        ren = {}
        wnodes = []
        for n in orig_nodes:
            ins = [chains.get(i, ren.get(i, i)) for i in n.inputs]
            if ins == n.inputs:
                continue
            nn = Node(n.op, ins, [o + sfx for o in n.outputs], dict(n.attrs), n.name + sfx)
            if n.op == "conv2d" and "kernel" in nn.attrs and len(nn.inputs) > 1 and nn.inputs[1] in chains.values():
                del nn.attrs["kernel"]  # the chain yields the 4-D [O, KH, KW, C] weight
            if n.name in a.depthwise:  # one group per kept channel
                nn.attrs["groups"] = int(sum(n_ if a.fixed[a.find(s_)] else _keep(n_, w)
                                             for s_, n_ in a.depthwise[n.name].segs))
            for o in n.outputs:
                ren[o] = o + sfx
            wnodes.append(nn)
        outs = []
        for o in m.outputs:
            if o in ren:
                outs.append(ren[o])
            else:  # this output does not depend on any pruned channel: an identity keeps names apart
                nn = Node("activation", [o], [o + sfx], {"act": "none"}, o + sfx)
                wnodes.append(nn)
                outs.append(o + sfx)
        width_nodes[w] = (chain_nodes, wnodes, outs)
    full_outs = []
    for o in list(m.outputs):
        new = o + width_suffix(1.0)
        _rename(m, o, new)
        full_outs.append(new)
    for w in ws:
        if width_nodes[w] is None:
            continue
        chain_nodes, wnodes, outs = width_nodes[w]
        for n in wnodes:  # the full width's outputs were renamed: follow them
            n.inputs = [i + width_suffix(1.0) if i in model.outputs else i for i in n.inputs]
        new_nodes.extend(chain_nodes + wnodes)
    m.nodes = m.nodes + new_nodes
    m.outputs = (full_outs if 1.0 in ws else []) + [o for w in ws if width_nodes[w] is not None
                                                     for o in width_nodes[w][2]]
    if 1.0 not in ws:
        _dead_code(m)
    for w in ws:
        entries.append({"width": w, "outputs": full_outs if w == 1.0 else width_nodes[w][2],
                        "macs": 0, "bytes": 0, "accuracy": None})
    m.metadata["widths"] = json.dumps(entries)
    m.metadata["slim"] = json.dumps({"criterion": criterion, "calibrated": calib is not None})
    _validate(m)

    # ---- 3. switchable BN: per-width statistics measured on calib
    if calib is not None:
        from .compress.calib import normalize_data

        feeds, count = normalize_data(model, calib)
        for w in ws:
            if w == 1.0:
                continue
            sfx = width_suffix(w)
            plain = extract_width(m, w)
            stats = _bn_stats(plain, feeds, count, calib_batch, progress)
            for node in m.nodes:
                if node.op != "batch_norm" or node.name not in stats or not node.name.endswith(sfx):
                    continue
                mean, var = stats[node.name]
                base = node.name
                shp_m = _chan_shape(m, node.inputs[3], mean.size)
                node.inputs[3] = m.add_constant(f"{base}/mean", mean.reshape(shp_m))
                node.inputs[4] = m.add_constant(f"{base}/var", var.reshape(shp_m))
            _dead_code(m)
        _validate(m)

    # ---- 4. report
    for e in entries:
        plain = extract_width(m, e["width"])
        e.update(model_cost(plain))
        if eval_data is not None:
            e["accuracy"] = _eval_accuracy(plain, eval_data)
    m.metadata["widths"] = json.dumps(entries)
    return m


def _chan_shape(m, value, c):
    """Shape of a width's per-channel constant: the shape the slice chain (or constant) has, c channels."""
    t = m.constants.get(value)
    if t is not None:
        return tuple(t.shape[:-1]) + (c,)
    for n in m.nodes:
        if value in n.outputs and n.op == "reshape":
            return tuple(int(d) for d in n.attr("shape"))[:-1] + (c,)
    return (c,)


def _validate(m: Model) -> Model:
    """``Model.validate``, letting the ``kernel`` attribute that compress() puts on CSR convolutions pass."""
    saved = [(n, n.attrs.pop("kernel")) for n in m.nodes if n.op == "conv2d" and "kernel" in n.attrs]
    try:
        return m.validate()
    finally:
        for n, k in saved:
            n.attrs["kernel"] = k


def _add(nodes, m, op, inputs, attrs, name):
    taken = {x.name for x in nodes} | {o for x in nodes for o in x.outputs}
    base, k = name, 1
    while name in taken or name in m.constants:
        name = f"{base}_{k}"
        k += 1
    nodes.append(Node(op, list(inputs), [name], dict(attrs), name))
    return name


# ============================================================== PyTorch slimmable networks
def from_torch_slimmable(module_factory, widths, example_inputs, **kwargs) -> Model:
    """Imports a network trained slimmable in PyTorch: ``module_factory(width)`` returns the module
    at one width multiplier (weights loaded). Each is converted with ``slimrt.from_torch``; they are
    merged into one multi-width ``Model`` when every narrower width's weight is a prefix (on every
    axis) of the full-width one -- batch-norm parameters may differ (switchable BN) and become the
    width's own constants. Anything else raises ``InputError`` naming the layer."""
    from .frontends.torch import from_torch

    ws = _check_widths(widths)
    models = {w: from_torch(module_factory(w), example_inputs, **kwargs) for w in ws}
    base = models[ws[0]]
    m = base.copy()
    sfx0 = width_suffix(ws[0])
    entries = []
    new_nodes = []
    for w in ws[1:]:
        sub = models[w]
        sfx = width_suffix(w)
        if len(sub.nodes) != len(base.nodes):
            raise InputError(f"width {w}: {len(sub.nodes)} nodes, the full width has {len(base.nodes)}: the graphs "
                             f"differ, not a slimmable network")
        ren = {i.name: i.name for i in base.inputs}
        nodes, chain = [], []
        for nb, ns in zip(base.nodes, sub.nodes):
            if nb.op != ns.op or len(nb.inputs) != len(ns.inputs):
                raise InputError(f"width {w}: node '{ns.name}' ({ns.op}) does not match '{nb.name}' ({nb.op})")
            ins = []
            for j, (ib, is_) in enumerate(zip(nb.inputs, ns.inputs)):
                if ib in base.constants:
                    if is_ not in sub.constants:
                        raise InputError(f"width {w}: node '{ns.name}' input {j} is not a constant")
                    ins.append(_merge_const(m, chain, base.constants[ib], ib, sub.constants[is_], sfx, nb, w))
                else:
                    if is_ not in ren:
                        raise InputError(f"width {w}: value '{is_}' has no counterpart in the full width")
                    ins.append(ren[is_])
            attrs = dict(ns.attrs)
            nn = Node(ns.op, ins, [o + sfx for o in nb.outputs], attrs, nb.name + sfx)
            for ob, os_ in zip(nb.outputs, ns.outputs):
                ren[os_] = ob + sfx
            nodes.append(nn)
        new_nodes.extend(chain + nodes)
        entries.append((w, [o + sfx for o in base.outputs]))
    full_outs = []
    for o in list(m.outputs):
        _rename(m, o, o + sfx0)
        full_outs.append(o + sfx0)
    m.nodes = m.nodes + new_nodes
    m.outputs = full_outs + [o for _, outs in entries for o in outs]
    meta = [{"width": ws[0], "outputs": full_outs, "macs": 0, "bytes": 0, "accuracy": None}]
    meta += [{"width": w, "outputs": outs, "macs": 0, "bytes": 0, "accuracy": None} for w, outs in entries]
    m.metadata["widths"] = json.dumps(meta)
    m.metadata["slim"] = json.dumps({"source": "torch_slimmable"})
    _validate(m)
    for e in meta:
        e.update(model_cost(extract_width(m, e["width"])))
    m.metadata["widths"] = json.dumps(meta)
    return m


def _merge_const(m, chain, tb, name, ts, sfx, node, w):
    db = tb.to_dense()
    ds = ts.to_dense()
    if db.ndim != ds.ndim or any(s > b for s, b in zip(ds.shape, db.shape)):
        raise InputError(f"width {w}: constant '{name}' of node '{node.name}' has shape {ds.shape}, not a prefix "
                         f"of the full width's {db.shape}")
    pre = db[tuple(slice(0, s) for s in ds.shape)]
    if ds.shape == db.shape and np.array_equal(pre, ds):
        return name
    if np.array_equal(pre, ds):
        axes = [k for k, (s, b) in enumerate(zip(ds.shape, db.shape)) if s != b]
        out = name + sfx
        chain.append(Node("slice", [name], [out], {"axes": axes, "starts": [0] * len(axes),
                                                   "ends": [int(ds.shape[k]) for k in axes]}, out))
        return out
    if node.op == "batch_norm":  # switchable BN: the width's own statistics / affine
        return m.add_constant(name + sfx, ts)
    raise InputError(f"width {w}: weight '{name}' of node '{node.name}' is not a prefix of the full-width "
                     f"weight (max difference {float(np.max(np.abs(pre - ds))) if pre.shape == ds.shape else 'n/a'}): "
                     f"the network was not trained slimmable with prefix channels")

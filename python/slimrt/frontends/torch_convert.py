"""Converts a ``torch.export.ExportedProgram`` (ATen graph, no decompositions) to an IR ``Model``.

See ``slimrt.frontends.torch`` for the design (layout tracking by permutation, dynamic batch).

Values while converting (``Converter.env``, one per fx node):

* ``Dyn``: a tensor computed by the graph. ``shape`` is its PyTorch shape (ints, or the string of
  a symbolic size such as ``"s77"``); ``layouts`` maps a permutation ``p`` to the IR value holding
  ``t.permute(p)``; ``primary`` is the layout it was produced in.
* ``torch.Tensor``: a constant (parameter, buffer, or folded from constants only).
* ``Sym``: a symbolic integer (``x.size(0)`` and arithmetic on it); reshapes read the traced output shape
  instead, a slice ending at one becomes ``slice_like``.

Symbolic sizes (the dynamic batch and sequence dims) are strings such as ``"s41"`` or ``"4*s31"``.
``Converter.sym_ref`` maps each plain symbol to the graph input and dim that carries it, so a reshape the
IR ``reshape`` cannot express (0 copies a dim only from the same position, one -1) becomes ``reshape_dims``
reading the missing sizes from that input's shape, and ``x[:, :y.size(1)]`` becomes ``slice_like``.
* Python scalars, lists, None: op arguments.
"""
from __future__ import annotations

import operator

import numpy as np
import torch

from ..errors import Error, InputError, UnsupportedError
from ..ir import Model

INT64_MAX = 2 ** 63 - 1


class Sym:
    """A symbolic int (e.g. ``x.size(0)`` with a dynamic batch)."""

    __slots__ = ("expr",)

    def __init__(self, expr):
        self.expr = str(expr)


class Dyn:
    __slots__ = ("shape", "dtype", "layouts", "primary")

    def __init__(self, shape, dtype, name, perm):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.primary = tuple(perm)
        self.layouts = {self.primary: name}

    @property
    def rank(self):
        return len(self.shape)

    def ir_shape(self, perm):
        return tuple(self.shape[p] for p in perm)


def ident(r):
    return tuple(range(r))


def chlast(r):
    """The channels-last permutation of rank r: (0, 2, .., r-1, 1)."""
    return (0,) + tuple(range(2, r)) + (1,) if r >= 3 else ident(r)


NHWC = (0, 2, 3, 1)


def _dim(d):
    if isinstance(d, int):
        return d
    expr = getattr(getattr(d, "node", None), "expr", None)
    if expr is None:
        return str(d)
    if getattr(expr, "is_number", False):
        return int(expr)  # a SymInt that is really a constant (never int(d): that would specialise it)
    return str(expr)


def _np_dtype(dt):
    if dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        return "float32"
    if dt in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        return np.dtype(str(dt).replace("torch.", "")).name
    if dt == torch.bool:
        return "bool"
    return str(dt)


def _spec(in_shape, out_shape):
    """IR reshape spec from the input's IR shape to the wanted IR shape (0 copies, one -1 inferred)."""
    spec, unresolved = [], 0
    for j, d in enumerate(out_shape):
        if isinstance(d, int):
            spec.append(d)
        elif j < len(in_shape) and in_shape[j] == d:
            spec.append(0)
        else:
            spec.append(-1)
            unresolved += 1
    if unresolved > 1:
        return None
    return spec


def _spec_refs(in_shape, out_shape, sym_ref):
    """``(dims, refs)`` for a ``reshape_dims`` from ``in_shape`` to ``out_shape``: sizes the input's own
    shape cannot give (a plain symbol at another position) are read from the graph input that carries
    them (``sym_ref``: symbol -> (input name, dim)); at most one compound size (``"4*s31"``) is inferred.
    None if impossible."""
    dims, refs, unresolved = [], [], 0
    for j, d in enumerate(out_shape):
        if isinstance(d, int):
            dims.append(d)
        elif j < len(in_shape) and in_shape[j] == d:
            dims.append(0)
        elif d in sym_ref:
            dims.append(-2)
            refs.append(sym_ref[d])
        else:
            dims.append(-1)
            unresolved += 1
    if unresolved > 1:
        return None
    return dims, refs


def _order_kept(shape, p, q):
    """Do layouts p and q of a tensor of this shape hold the elements in the same memory order?"""
    return [a for a in p if shape[a] != 1] == [a for a in q if shape[a] != 1]


def _walk(v, fn):
    if isinstance(v, (list, tuple)):
        return type(v)(_walk(e, fn) for e in v)
    if isinstance(v, dict):
        return {k: _walk(e, fn) for k, e in v.items()}
    return fn(v)


def _any(v, pred):
    if isinstance(v, (list, tuple)):
        return any(_any(e, pred) for e in v)
    if isinstance(v, dict):
        return any(_any(e, pred) for e in v.values())
    return pred(v)


class Converter:
    def __init__(self, ep, root_class=""):
        self.ep = ep
        self.root_class = root_class
        self.m = Model()
        self.env = {}
        self._const_cache = {}
        self._tensor_names = {}
        self.node = None  # the fx node being converted (for names and errors)
        self.sym_ref = {}  # plain symbol ("s41") -> (graph input name, dim) that carries it

    # ------------------------------------------------------------------ errors and names
    @staticmethod
    def _stack(node):
        if node is None:
            return []
        stack = node.meta.get("nn_module_stack") or {}
        return [v for k, v in stack.items() if not str(k).startswith("_empty_nn_module_stack")]

    def where(self, node=None):
        node = node or self.node
        stack = self._stack(node)
        if stack:
            path, cls = stack[-1]
            cls = getattr(cls, "__qualname__", cls)
            if path:
                return f"module '{path}' ({cls})"
            return f"the root module ({cls})"
        return f"the root module ({self.root_class})" if self.root_class else "the root module"

    def module_path(self, node=None):
        stack = self._stack(node or self.node)
        return (stack[-1][0] or "") if stack else ""

    def unsupported(self, what, node=None):
        node = node or self.node
        op = _opname(node.target) if node is not None and node.op == "call_function" else "?"
        return UnsupportedError(f"slimrt cannot convert torch op '{op}' from {self.where(node)}: {what}")

    def base_name(self):
        node = self.node
        path = self.module_path(node)
        return path if path else node.name

    # ------------------------------------------------------------------ IR emission
    def emit(self, op, inputs, attrs=None, suffix=None):
        base = self.base_name()
        name = f"{base}/{suffix}" if suffix else base
        return self.m.add_node(op, inputs, attrs or {}, name=name)

    def const(self, value, hint=None, key=None):
        """IR constant for a tensor/array/scalar (float -> float32), cached by ``key``."""
        if key is not None and key in self._const_cache:
            return self._const_cache[key]
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            if t.is_floating_point():
                arr = t.to(torch.float32).contiguous().numpy().copy()
            else:
                arr = t.contiguous().numpy().copy()
        else:
            arr = np.asarray(value)
            if arr.dtype.kind == "f" or arr.dtype.kind == "b":
                arr = arr.astype(np.float32)
        name = self.m.add_constant(hint or f"{self.base_name()}/const", np.ascontiguousarray(arr))
        if key is not None:
            self._const_cache[key] = name
        return name

    def tname(self, t, default):
        return self._tensor_names.get(id(t), default)

    def param(self, t, tag, fn):
        """A constant derived from tensor ``t`` by ``fn`` (e.g. a weight permutation), cached per (t, tag)."""
        base = self.tname(t, f"{self.base_name()}/w")
        return self.const(fn(t.detach().to(torch.float32)), hint=base, key=(id(t), tag))

    def ir(self, v: Dyn, perm):
        """The IR value holding ``v.permute(perm)``; inserts a transpose (or a reshape) when needed."""
        perm = tuple(perm)
        if perm in v.layouts:
            return v.layouts[perm]
        src_p = v.primary
        src = v.layouts[src_p]
        for p, n in v.layouts.items():  # prefer a source from which only size-1 axes move
            if _order_kept(v.shape, p, perm):
                src_p, src = p, n
                break
        tag = "nchw" if perm == ident(len(perm)) else ("nhwc" if perm == chlast(len(perm)) else "perm")
        name = f"{src}/{tag}"
        if _order_kept(v.shape, src_p, perm):
            out = self.reshape_node(src, v.ir_shape(src_p), v.ir_shape(perm), name=name)
            if out is not None:
                v.layouts[perm] = out
                return out
        q = [src_p.index(perm[i]) for i in range(len(perm))]
        out = self.m.add_node("transpose", [src], {"perm": q}, name=name)
        v.layouts[perm] = out
        return out

    def compatible(self, v: Dyn):
        """A layout of v whose memory order equals PyTorch's (for reshapes), converting if none."""
        idp = ident(v.rank)
        for p in [v.primary] + [p for p in v.layouts if p != v.primary]:
            if _order_kept(v.shape, p, idp):
                return p, v.layouts[p]
        return idp, self.ir(v, idp)

    def out_shape(self, node=None, index=None):
        val = (node or self.node).meta.get("val")
        if index is not None:
            val = val[index]
        if not isinstance(val, torch.Tensor):
            raise self.unsupported("no traced output shape")
        return tuple(_dim(d) for d in val.shape), _np_dtype(val.dtype)

    def new(self, name, perm, index=None):
        shape, dtype = self.out_shape(index=index)
        return Dyn(shape, dtype, name, perm)

    def reshape_node(self, src, in_shape, out_shape, name=None, suffix=None):
        """Emits a reshape of IR value ``src`` (IR shape ``in_shape``) to ``out_shape``: ``reshape`` when
        0 / -1 say it, else ``reshape_dims`` with the symbolic sizes read from the graph inputs. Returns
        the new value's name, or None when the sizes cannot be expressed."""
        spec = _spec(in_shape, out_shape)
        if spec is not None:
            if name is not None:
                return self.m.add_node("reshape", [src], {"shape": spec}, name=name)
            return self.emit("reshape", [src], {"shape": spec}, suffix)
        sr = _spec_refs(in_shape, out_shape, self.sym_ref)
        if sr is None:
            return None
        dims, refs = sr
        ref_inputs, flat = [], []
        for vname, d in refs:
            if vname not in ref_inputs:
                ref_inputs.append(vname)
            flat += [1 + ref_inputs.index(vname), d]
        attrs = {"dims": dims, "refs": flat}
        if name is not None:
            return self.m.add_node("reshape_dims", [src] + ref_inputs, attrs, name=name)
        return self.emit("reshape_dims", [src] + ref_inputs, attrs, suffix)

    def reshape_to(self, v: Dyn, out_shape, suffix=None):
        """IR value holding ``v`` reshaped (PyTorch semantics) to ``out_shape``; returns its name (identity layout)."""
        p, src = self.compatible(v)
        in_shape = v.ir_shape(p)
        if tuple(in_shape) == tuple(out_shape):
            return src
        out = self.reshape_node(src, in_shape, out_shape, suffix=suffix)
        if out is None:
            raise self.unsupported(f"reshape from {tuple(in_shape)} to {tuple(out_shape)}: more than one size "
                                   "is a product of dynamic dimensions")
        return out

    # ------------------------------------------------------------------ driver
    def convert(self, input_names=None, output_names=None) -> Model:
        ep = self.ep
        sig = ep.graph_signature
        params = dict(sig.inputs_to_parameters)
        buffers = dict(sig.inputs_to_buffers)
        lifted = dict(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
        customs = dict(getattr(sig, "inputs_to_lifted_custom_objs", {}) or {})
        user_inputs = list(sig.user_inputs)
        state = ep.state_dict
        consts = ep.constants
        if input_names is not None:
            input_names = list(input_names)
            n_tensor = len(user_inputs)
            if len(input_names) != n_tensor:
                raise InputError(f"input_names has {len(input_names)} names, the module takes {n_tensor} inputs")
        n_in = 0
        out_vals = None
        for node in ep.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                if node.name in params or node.name in buffers:
                    target = params.get(node.name) or buffers.get(node.name)
                    t = state[target] if target in state else consts[target]
                    self._tensor_names[id(t)] = target
                    self.env[node] = t
                elif node.name in lifted:
                    t = consts[lifted[node.name]]
                    self._tensor_names[id(t)] = lifted[node.name]
                    self.env[node] = t
                elif node.name in customs:
                    raise UnsupportedError(f"custom object input '{customs[node.name]}' is not supported")
                else:
                    val = node.meta.get("val")
                    if not isinstance(val, torch.Tensor):
                        # a non-tensor user input was specialised by the tracer: it is a constant
                        self.env[node] = val
                        n_in += 1
                        continue
                    shape = tuple(_dim(d) for d in val.shape)
                    dtype = _np_dtype(val.dtype)
                    if dtype not in ("float32", "int64", "int32"):
                        raise UnsupportedError(f"input '{node.name}' has dtype {val.dtype}; slimrt takes float32 "
                                               "feature inputs and int32/int64 ids")
                    name = input_names[n_in] if input_names is not None else node.name
                    n_in += 1
                    self.m.add_input(name, [d if isinstance(d, int) else None for d in shape], dtype)
                    for j, d in enumerate(shape):
                        if isinstance(d, str) and d.isidentifier():
                            self.sym_ref.setdefault(d, (name, j))
                    self.env[node] = Dyn(shape, dtype, name, ident(len(shape)))
            elif node.op == "call_function":
                self.env[node] = self.call(node)
            elif node.op == "output":
                out_vals = node.args[0]
            else:
                raise UnsupportedError(f"graph node '{node.name}' of kind {node.op} ({node.target}) from "
                                       f"{self.where(node)} is not supported")
        self.node = None
        outs = list(out_vals) if isinstance(out_vals, (list, tuple)) else [out_vals]
        names = []
        for i, o in enumerate(outs):
            v = self.env.get(o) if hasattr(o, "op") else o
            if not isinstance(v, Dyn):
                raise UnsupportedError(f"output {i} of the module is a constant or a non-tensor "
                                       f"({type(v).__name__}); slimrt models compute their outputs from inputs")
            names.append(self.ir(v, ident(v.rank)))
        if output_names is None:
            output_names = ["output"] if len(names) == 1 else [f"output_{i}" for i in range(len(names))]
        elif len(list(output_names)) != len(names):
            raise InputError(f"output_names has {len(list(output_names))} names, the module returns {len(names)}")
        self.m.outputs = self._rename_outputs(names, list(output_names))
        shapes = self._ir_shapes()
        fuse_masked_softmax(self.m, shapes)
        fuse_attention(self.m, shapes)
        fuse_packed_attention(self.m, shapes)
        self.m.validate()
        return self.m

    def _ir_shapes(self):
        """{IR value: shape} for the values the converted tensors are held in (sizes: ints or symbol strings)."""
        shapes = {i.name: None for i in self.m.inputs}

        def visit(v):
            if isinstance(v, Dyn):
                for p, n in v.layouts.items():
                    shapes[n] = v.ir_shape(p)
            elif isinstance(v, (list, tuple)):
                for e in v:
                    visit(e)

        for v in self.env.values():
            visit(v)
        for k, t in self.m.constants.items():
            shapes[k] = tuple(t.shape)
        return shapes

    def _rename_outputs(self, names, wanted):
        inputs = {i.name for i in self.m.inputs}
        produced = {o for n in self.m.nodes for o in n.outputs}
        final, done = [], {}
        for old, new in zip(names, wanted):
            if old in done:
                final.append(done[old])
                continue
            if old in inputs or old not in produced or old == new:
                final.append(old)
                done[old] = old
                continue
            new = self.m.unique_name(new)
            for n in self.m.nodes:
                n.inputs = [new if i == old else i for i in n.inputs]
                n.outputs = [new if o == old else o for o in n.outputs]
            final.append(new)
            done[old] = new
        return final

    # ------------------------------------------------------------------ one node
    def val(self, a):
        import torch.fx

        def f(x):
            if isinstance(x, torch.fx.Node):
                return self.env[x]
            return x

        return _walk(a, f)

    def call(self, node):
        target = node.target
        if target is operator.getitem:
            seq, idx = self.val(node.args[0]), node.args[1]
            if isinstance(seq, (list, tuple)):
                return seq[idx]
            if isinstance(seq, torch.Tensor):
                return seq[idx]
            raise self.unsupported("indexing into a tensor value")
        args = self.val(list(node.args))
        kwargs = self.val(dict(node.kwargs))
        is_dyn = lambda x: isinstance(x, Dyn)  # noqa: E731
        is_sym = lambda x: isinstance(x, Sym)  # noqa: E731
        if not isinstance(target, torch._ops.OpOverload):
            # python-level ops on symbolic ints (operator.mul(sym_size, 4), ...), torch.sym_* helpers
            if _any((args, kwargs), is_dyn):
                raise UnsupportedError(f"python function {getattr(target, '__name__', target)} on a tensor from "
                                       f"{self.where(node)} is not supported")
            if _any((args, kwargs), is_sym):
                return Sym(node.meta.get("val", "?"))
            return target(*args, **kwargs)
        name = target._schema.name
        if name in _IGNORED:
            return None
        if name in ("aten::sym_size", "aten::sym_numel", "aten::sym_stride", "aten::sym_storage_offset"):
            val = node.meta.get("val")
            if isinstance(val, int):
                return val
            return Sym(val)
        if not _any((args, kwargs), is_dyn) and not _any((args, kwargs), is_sym) and name not in _NO_FOLD:
            with torch.no_grad():
                try:
                    return target(*args, **kwargs)
                except Exception as e:  # noqa: BLE001
                    raise self.unsupported(f"folding constants failed ({type(e).__name__}: {e})") from e
        key = name.split("::", 1)[1] if name.startswith("aten::") else None
        if key is not None and key.endswith("_") and not key.startswith("_") and key[:-1] in HANDLERS:
            key = key[:-1]  # in-place variant (relu_, add_): the traced graph already rewired later uses
        h = HANDLERS.get(key) if key is not None else None
        if h is None:
            raise self.unsupported("no slimrt equivalent" if key is not None else "custom/non-ATen op")
        a = _bind(target, args, kwargs)
        a["__overload__"] = target._overloadname
        try:
            return h(self, a)
        except Error:
            raise
        except (ValueError, TypeError, IndexError, KeyError) as e:
            raise self.unsupported(f"{type(e).__name__}: {e}") from e


def _bcast_into(mask, x):
    """Does ``mask`` broadcast to ``x`` (numpy rules) without enlarging it, with the same last dim?"""
    if mask is None or x is None or not mask or len(mask) > len(x) or mask[-1] != x[-1]:
        return False
    return all(m == 1 or m == d for m, d in zip(mask[::-1], x[::-1]))


def fuse_masked_softmax(m: Model, shapes) -> int:
    """softmax(last axis) of ``add(mul(scores, scalar), mask)`` (or of the add, or of the mul) -> one
    ``scaled_masked_softmax(scores, mask)`` node, the attention-score pattern of eager attention code
    (Hugging Face's ``matmul * scaling + attention_mask``). The intermediate values must have no other
    reader; ``shapes`` ({IR value: shape}) must show the mask broadcasting into the scores. Returns the
    number of fused nodes."""
    producer = {o: n for n in m.nodes for o in n.outputs}
    uses = {}
    for n in m.nodes:
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1
    outs = set(m.outputs)

    def private(v):
        return uses.get(v, 0) == 1 and v not in outs and v in producer

    def scalar(v):
        t = m.constants.get(v)
        if t is None or int(np.prod(t.shape)) != 1:
            return None
        d = np.asarray(t.to_dense(), np.float64).reshape(-1)
        return float(d[0]) if np.isfinite(d[0]) else None

    drop, fused = set(), 0
    for node in m.nodes:
        if node.op != "softmax":
            continue
        x = node.inputs[0]
        shp = shapes.get(x)
        if shp is None or node.attr("axis") not in (-1, len(shp) - 1):
            continue
        mask, scale, gone = None, 1.0, []
        src = producer.get(x)
        if src is not None and src.op == "add" and private(x):
            a, b = src.inputs
            for sc, mk in ((a, b), (b, a)):
                if shapes.get(sc) == shp and sc not in m.constants and _bcast_into(shapes.get(mk), shp):
                    x, mask = sc, mk
                    gone.append(src)
                    break
            src = producer.get(x) if mask is not None else None
        if src is not None and src.op == "mul" and private(x):
            a, b = src.inputs
            for sc, k in ((a, b), (b, a)):
                f = scalar(k)
                if f is not None and f > 0 and shapes.get(sc) == shp:  # the schema wants scale > 0
                    x, scale = sc, f
                    gone.append(src)
                    break
        if not gone:
            continue
        node.op = "scaled_masked_softmax"
        node.inputs = [x] + ([mask] if mask is not None else [])
        node.attrs = {"scale": scale}
        drop.update(id(g) for g in gone)
        fused += 1
    m.nodes = [n for n in m.nodes if id(n) not in drop]
    return fused


def fuse_attention(m: Model, shapes) -> int:
    """The head split / attention / head merge of eager multi-head attention as one ``attention`` node:

        reshape(X, [B, S, H, D]) -> transpose(0, 2, 1, 3)          for X = q, k (and v) [B, S, H*D]
        matmul(q_h, k_h, trans_b=1) (or k held as [B, H, D, S]) -> scaled_masked_softmax(., mask)
        matmul(probs, v_h) -> transpose(0, 2, 1, 3) -> reshape [B, S, H*D]

    becomes ``attention(Xq, Xk, Xv, mask, heads=H, scale)``: no transposes, the scores never leave the cache.
    Every intermediate must have no other reader. Returns the number of fused blocks."""
    producer = {o: n for n in m.nodes for o in n.outputs}
    uses = {}
    for n in m.nodes:
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1
    outs = set(m.outputs)

    def private(v):
        return uses.get(v, 0) == 1 and v not in outs and v in producer

    def head_split(v, perm):
        """X [B, S, H*D] if v = transpose(reshape(X, [B, S, H, D]), perm) (both private), else None."""
        t = producer.get(v)
        if t is None or t.op != "transpose" or list(t.attr("perm")) != list(perm) or not private(v):
            return None
        r = producer.get(t.inputs[0])
        if r is None or r.op not in ("reshape", "reshape_dims") or not private(t.inputs[0]):
            return None
        xs, rs = shapes.get(r.inputs[0]), shapes.get(t.inputs[0])
        if xs is None or rs is None or len(xs) != 3 or len(rs) != 4 or tuple(rs[:2]) != tuple(xs[:2]):
            return None
        if not (isinstance(rs[2], int) and isinstance(rs[3], int) and xs[2] == rs[2] * rs[3]):
            return None
        return r.inputs[0], rs[2], [t, r]

    drop, fused = set(), 0
    for node in list(m.nodes):
        if node.op not in ("reshape", "reshape_dims") or id(node) in drop:
            continue
        ot = node.inputs[0]
        t = producer.get(ot)
        if t is None or t.op != "transpose" or list(t.attr("perm")) != [0, 2, 1, 3] or not private(ot):
            continue
        pv = producer.get(t.inputs[0])
        ys, os_ = shapes.get(node.outputs[0]), shapes.get(ot)
        if pv is None or pv.op != "matmul" or pv.attr("trans_b") or pv.attr("act") != "none" \
                or not private(t.inputs[0]) or ys is None or os_ is None or len(ys) != 3 or len(os_) != 4 \
                or tuple(ys[:2]) != tuple(os_[:2]) or not isinstance(os_[2], int) or not isinstance(os_[3], int) \
                or ys[2] != os_[2] * os_[3]:
            continue
        probs, vh = pv.inputs
        sm = producer.get(probs)
        if sm is None or sm.op != "scaled_masked_softmax" or not private(probs):
            continue
        qk = producer.get(sm.inputs[0])
        if qk is None or qk.op != "matmul" or qk.attr("act") != "none" or not private(sm.inputs[0]):
            continue
        qs = head_split(qk.inputs[0], [0, 2, 1, 3])
        ks = head_split(qk.inputs[1], [0, 2, 1, 3] if qk.attr("trans_b") else [0, 2, 3, 1])
        vs = head_split(vh, [0, 2, 1, 3])
        if qs is None or ks is None or vs is None or not (qs[1] == ks[1] == vs[1] == os_[2]):
            continue
        mask = sm.inputs[1:]
        node.op = "attention"
        node.inputs = [qs[0], ks[0], vs[0]] + list(mask)
        node.attrs = {"heads": int(os_[2]), "scale": float(sm.attr("scale"))}
        drop.update(id(n) for n in [t, pv, sm, qk] + qs[2] + ks[2] + vs[2])
        fused += 1
    m.nodes = [n for n in m.nodes if id(n) not in drop]
    return fused


_MOVES = ("transpose", "reshape", "reshape_dims", "slice", "flatten")


def fuse_packed_attention(m: Model, shapes) -> int:
    """``torch.nn.MultiheadAttention`` as traced (``nn.TransformerEncoderLayer`` and friends): one packed
    in-projection X = dense(x, W[3E, E]) moved to sequence-first, split into q / k / v by slices and
    reshaped / transposed to heads [B, H, S, D]; q @ k^T -> ``scaled_masked_softmax`` -> @ v; the heads
    merged back by a transpose and reshapes around the out-projection dense. Becomes three denses on x
    (W's row blocks), one ``attention`` node and the out-projection on batch-first [B, S, E] rows: no
    slices, no head transposes, the scores kept in cache (a sequence-first result gets one transpose).

    The data movement between X and the heads (and between the heads and the out-projection) is
    accepted whatever ops spell it, provided it is only moves (transpose / reshape / reshape_dims /
    slice / flatten, every intermediate read once) and, run by the reference on index-valued probes of
    two batch and sequence sizes, it is exactly the head split (merge). Returns the number fused."""
    from ..formats import Dense
    from ..ir import Node
    from ..optimize import _consumers, _producer
    from ..reference import run_node

    producer, readers = _producer(m), _consumers(m)
    outs = set(m.outputs)

    def private(v):
        return len(readers.get(v, [])) == 1 and v not in outs and v in producer

    def back(v, stop):
        """The move nodes from a value computed by `stop` to v, or None."""
        chain = []
        while v != stop:
            n = producer.get(v)
            if n is None or n.op not in _MOVES or v in outs:
                return None
            chain.append(n)
            v = n.inputs[0]
        return chain

    def forward(v):
        """The move nodes that alone carry v on to a dense, and that dense, or None."""
        chain = []
        while True:
            r = readers.get(v, [])
            if len(r) != 1 or v in outs:
                return None
            n = r[0]
            if n.op == "dense":
                return chain, n
            if n.op not in _MOVES or n.inputs[0] != v:
                return None
            chain.append(n)
            v = n.outputs[0]

    def run_chain(nodes, env):
        env = dict(env)
        for n in nodes:
            env[n.outputs[0]] = run_node(n, [env[i] for i in n.inputs])
        return env

    def dense_ok(d):
        w = m.constants.get(d.inputs[1])
        return (isinstance(w, Dense) and w.data.ndim == 2 and d.attr("act") == "none" and not d.attr("residual")
                and all(len(readers.get(c, [])) == 1 for c in d.inputs[1:]) and all(c in m.constants for c in d.inputs[1:]))

    fused, drop, add, spent = 0, set(), [], []
    for sm in list(m.nodes):
        if sm.op != "scaled_masked_softmax" or id(sm) in drop:
            continue
        qk = producer.get(sm.inputs[0])
        if qk is None or qk.op != "matmul" or not qk.attr("trans_b") or qk.attr("act") != "none" \
                or not private(sm.inputs[0]) or not private(sm.outputs[0]):
            continue
        pv = readers[sm.outputs[0]][0]
        if pv.op != "matmul" or pv.inputs[0] != sm.outputs[0] or pv.attr("trans_b") or pv.attr("act") != "none":
            continue
        # the packed in-projection: where the q chain starts
        v = qk.inputs[0]
        while v in producer and producer[v].op in _MOVES:
            v = producer[v].inputs[0]
        proj = producer.get(v)
        if proj is None or proj.op != "dense" or not dense_ok(proj) or v in outs:
            continue
        X, x_in = v, proj.inputs[0]
        chains = [back(h, X) for h in (qk.inputs[0], qk.inputs[1], pv.inputs[1])]
        if any(c is None for c in chains):
            continue
        split = list({id(n): n for c in chains for n in c}.values())  # the moves shared or not
        split.sort(key=m.nodes.index)
        inside = {id(n) for n in split} | {id(qk), id(pv)}
        if any(id(r) not in inside for n in [proj] + split for r in readers.get(n.outputs[0], [])):
            continue
        fwd = forward(pv.outputs[0])
        if fwd is None:
            continue
        merge, outp = fwd
        after = []  # moves after the out-projection, up to the block's result
        y = outp.outputs[0]
        while len(readers.get(y, [])) == 1 and y not in outs and readers[y][0].op in ("reshape", "reshape_dims") \
                and readers[y][0].inputs[0] == y:
            after.append(readers[y][0])
            y = after[-1].outputs[0]
        if not dense_ok(outp):
            continue
        w_in, w_out = m.constants[proj.inputs[1]].data, m.constants[outp.inputs[1]].data
        E = w_in.shape[1]
        if w_in.shape[0] != 3 * E or w_out.shape != (E, E):
            continue
        hs = shapes.get(qk.inputs[0])
        if hs is None or len(hs) != 4 or not isinstance(hs[1], int) or not isinstance(hs[3], int) \
                or hs[1] * hs[3] != E:
            continue
        H, D = hs[1], hs[3]
        xs = shapes.get(X)
        if xs is None or len(xs) != 3 or any(not isinstance(d, (int, str)) for d in xs[:2]) or xs[0] == xs[1]:
            continue
        sides = {i for c in (split, merge, after) for n in c for i in n.inputs[1:]}

        def probe(lay_in, B, S):
            """The output layout ("bf" [B, S, E] or "sf" [S, B, E]) when X laid out as lay_in splits
            into the heads and the heads merge back exactly, else None. Sizes fixed in the graph are
            used as they are."""
            b_ax, s_ax = (xs[0], xs[1]) if lay_in == "bf" else (xs[1], xs[0])
            B, S = b_ax if isinstance(b_ax, int) else B, s_ax if isinstance(s_ax, int) else S
            size = {b_ax: B, s_ax: S}
            env = {}
            for i in sides:
                sh = shapes.get(i)
                if sh is None or any(not isinstance(d, int) and d not in size for d in sh):
                    return None
                env[i] = np.zeros([d if isinstance(d, int) else size[d] for d in sh])
            xb = np.arange(B * S * 3 * E, dtype=np.float64).reshape(B, S, 3 * E)
            env[X] = xb if lay_in == "bf" else np.ascontiguousarray(xb.transpose(1, 0, 2))
            got = run_chain(split, env)
            for j, h in enumerate((qk.inputs[0], qk.inputs[1], pv.inputs[1])):
                want = xb[:, :, j * E:(j + 1) * E].reshape(B, S, H, D).transpose(0, 2, 1, 3)
                if got[h].shape != want.shape or not np.array_equal(got[h], want):
                    return None
            cv = np.arange(B * H * S * D, dtype=np.float64).reshape(B, H, S, D)
            env[pv.outputs[0]] = cv
            env = run_chain(merge, env)
            env[outp.outputs[0]] = env[outp.inputs[0]]  # the out-projection is row-wise: rows carried as they are
            y_ = run_chain(after, env)[y]
            bf = cv.transpose(0, 2, 1, 3).reshape(B, S, E)
            if y_.shape == bf.shape and np.array_equal(y_, bf):
                return "bf"
            if y_.shape == (S, B, E) and np.array_equal(y_, bf.transpose(1, 0, 2)):
                return "sf"
            return None

        lay_in = layout = None
        for cand in ("bf", "sf"):
            try:
                got = [probe(cand, B, S) for B, S in ((2, 3), (3, 5))]
            except Exception:  # noqa: BLE001 -- the moves do not fit this layout: not the pattern
                continue
            if got[0] is not None and got[0] == got[1]:
                lay_in, layout = cand, got[0]
                break
        if lay_in is None:
            continue
        b_in = m.constants[proj.inputs[2]].to_dense() if len(proj.inputs) > 2 else None
        qkv, new = [], []
        if lay_in == "sf":  # the projections read batch-first rows
            xt = m.unique_name(f"{proj.name}/bsd")
            new.append(("transpose", [x_in], {"perm": [1, 0, 2]}, xt))
            x_in = xt
        for j, tag in enumerate("qkv"):
            wn = m.unique_name(f"{proj.name}.{tag}_weight")
            m.constants[wn] = Dense(np.ascontiguousarray(w_in[j * E:(j + 1) * E]))
            ins = [x_in, wn]
            if b_in is not None:
                bn = m.unique_name(f"{proj.name}.{tag}_bias")
                m.constants[bn] = Dense(np.ascontiguousarray(b_in[j * E:(j + 1) * E]))
                ins.append(bn)
            qkv.append((ins, m.unique_name(f"{proj.name}/{tag}")))
        att = m.unique_name(f"{sm.name}/attention")
        o_bf = y if layout == "bf" else m.unique_name(f"{outp.name}/bsd")
        new += [("dense", ins, {}, name) for ins, name in qkv]
        new.append(("attention", [name for _, name in qkv] + list(sm.inputs[1:]),
                    {"heads": H, "scale": float(sm.attr("scale"))}, att))
        new.append(("dense", [att] + list(outp.inputs[1:]), {}, o_bf))
        if layout == "sf":
            new.append(("transpose", [o_bf], {"perm": [1, 0, 2]}, y))
        block = [proj, qk, sm, pv, outp] + split + merge + after
        drop.update(id(n) for n in block)
        spent += proj.inputs[1:]  # the packed weights (read by proj alone: dense_ok), now split
        add.append((max(m.nodes.index(n) for n in block), new))
        for n in block:  # no later block may reuse these values
            for o in n.outputs:
                readers.pop(o, None)
        fused += 1
    if not fused:
        return 0
    out = []
    at = {i: new for i, new in add}
    for i, n in enumerate(m.nodes):
        if id(n) not in drop:
            out.append(n)
        for op, ins, attrs, name in at.get(i, []):
            out.append(Node(op, list(ins), [name], dict(attrs), name))
    m.nodes = out
    for k in spent:
        del m.constants[k]
    return fused


def _opname(target):
    if isinstance(target, torch._ops.OpOverload):
        return target._schema.name + ("" if target._overloadname == "default" else "." + target._overloadname)
    return getattr(target, "__name__", str(target))


def _bind(target, args, kwargs):
    out = {}
    for i, arg in enumerate(target._schema.arguments):
        if i < len(args) and not arg.kwarg_only:
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out


_IGNORED = {"aten::_assert_tensor_metadata", "aten::_assert_scalar", "aten::sym_constrain_range",
            "aten::sym_constrain_range_for_size", "aten::_assert_async"}
# ops never folded even on constants (nondeterministic)
_NO_FOLD = {"aten::rand", "aten::randn", "aten::randint", "aten::rand_like", "aten::randn_like", "aten::bernoulli",
            "aten::normal", "aten::uniform", "aten::multinomial"}


# ====================================================================== op handlers
HANDLERS = {}


def handles(*names):
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn

    return deco


def _need_dyn(c, v, what="input"):
    if not isinstance(v, Dyn):
        raise c.unsupported(f"{what} must be computed from the model inputs")
    return v


def _need_float(c, v):
    if v.dtype != "float32":
        raise c.unsupported(f"{v.dtype} tensors are only supported as embedding ids")
    return v


def _pair(v, n=2):
    if isinstance(v, (list, tuple)):
        v = [int(e) for e in v]
        return v * n if len(v) == 1 else v
    return [int(v)] * n


def _reuse(c, v: Dyn):
    """An op that returns its input unchanged (dropout in eval, contiguous, clone, ...)."""
    shape, dtype = c.out_shape()
    if tuple(shape) != v.shape:
        raise c.unsupported(f"shape changes from {v.shape} to {shape}")
    return v


# ---------------------------------------------------------------- identity-like
@handles("contiguous", "clone", "detach", "alias", "lift_fresh_copy", "view_as", "reshape_as", "type_as",
         "_to_copy", "to")
def _h_identity(c, a):
    x = next(iter(v for k, v in a.items() if k != "__overload__"))
    x = _need_dyn(c, x)
    if x.dtype != c.out_shape()[1]:
        raise c.unsupported(f"dtype conversion {x.dtype} -> {c.out_shape()[1]}")
    shape, _ = c.out_shape()
    if tuple(shape) != x.shape:
        return _reshape_like(c, x)
    return x


@handles("dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "native_dropout")
def _h_dropout(c, a):
    x = _need_dyn(c, a["input"])
    if a.get("train"):
        raise c.unsupported("dropout in training mode (call module.eval())")
    if c.node.target._schema.name == "aten::native_dropout":
        return [x, None]
    return x


# ---------------------------------------------------------------- activations
_SIMPLE_ACTS = {"relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu",
                "hardswish": "hard_swish", "hardsigmoid": "hard_sigmoid"}


def _act(c, x: Dyn, act, alpha=None, suffix=None):
    p = x.primary
    attrs = {"act": act}
    if alpha is not None:
        attrs["alpha"] = float(alpha)
    return c.emit("activation", [x.layouts[p]], attrs, suffix), p


def _unary_act(name):
    def h(c, a):
        x = _need_float(c, _need_dyn(c, a["self"]))
        out, p = _act(c, x, _SIMPLE_ACTS[name])
        return c.new(out, p)

    return h


for _n in _SIMPLE_ACTS:
    HANDLERS[_n] = _unary_act(_n)


@handles("gelu")
def _h_gelu(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    approx = a.get("approximate") or "none"
    if approx not in ("none", "tanh"):
        raise c.unsupported(f"gelu approximate={approx!r}")
    out, p = _act(c, x, "gelu" if approx == "none" else "gelu_tanh")
    return c.new(out, p)


@handles("leaky_relu")
def _h_leaky(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    out, p = _act(c, x, "leaky_relu", float(a["negative_slope"]))
    return c.new(out, p)


@handles("elu")
def _h_elu(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    if float(a["input_scale"]) != 1.0:
        raise c.unsupported("elu with input_scale != 1")
    out, p = _act(c, x, "elu", float(a["alpha"]))
    if float(a["scale"]) != 1.0:
        out = c.emit("mul", [out, c.const(np.float32([a["scale"]]))], suffix="scale")
    return c.new(out, p)


@handles("selu")
def _h_selu(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    out, p = _act(c, x, "elu", 1.6732632423543772848170429916717)
    out = c.emit("mul", [out, c.const(np.float32([1.0507009873554804934193349852946]))], suffix="scale")
    return c.new(out, p)


def _clamp(c, x: Dyn, lo, hi):
    """clamp(x, lo, hi) from the IR's relu / relu6 (exact for the common (0, None) / (0, 6) cases)."""
    p = x.primary
    cur = x.layouts[p]
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    if lo == 0.0 and hi == 6.0:
        return c.emit("activation", [cur], {"act": "relu6"}), p
    if lo is not None:
        if lo == 0.0:
            cur = c.emit("activation", [cur], {"act": "relu"}, "min")
        else:  # max(x, lo) = relu(x - lo) + lo
            lc = c.const(np.float32([lo]))
            cur = c.emit("sub", [cur, lc], suffix="min_sub")
            cur = c.emit("activation", [cur], {"act": "relu"}, "min")
            cur = c.emit("add", [cur, lc], suffix="min_add")
    if hi is not None:  # min(y, hi) = hi - relu(hi - y)
        hc = c.const(np.float32([hi]))
        cur = c.emit("sub", [hc, cur], suffix="max_sub")
        cur = c.emit("activation", [cur], {"act": "relu"}, "max")
        cur = c.emit("sub", [hc, cur], suffix="max")
    return cur, p


@handles("hardtanh")
def _h_hardtanh(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    out, p = _clamp(c, x, a["min_val"], a["max_val"])
    return c.new(out, p)


@handles("clamp", "clip")
def _h_clamp(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    if isinstance(a.get("min"), (Dyn, torch.Tensor)) or isinstance(a.get("max"), (Dyn, torch.Tensor)):
        raise c.unsupported("clamp with tensor bounds")
    if a.get("min") is None and a.get("max") is None:
        return x
    out, p = _clamp(c, x, a.get("min"), a.get("max"))
    return c.new(out, p)


@handles("clamp_min")
def _h_clamp_min(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    out, p = _clamp(c, x, a["min"], None)
    return c.new(out, p)


@handles("clamp_max")
def _h_clamp_max(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    out, p = _clamp(c, x, None, a["max"])
    return c.new(out, p)


@handles("prelu", "_prelu_kernel")
def _h_prelu(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    w = a["weight"]
    if not isinstance(w, torch.Tensor):
        raise c.unsupported("PReLU with a computed slope")
    if w.numel() == 1:
        p = x.primary
        slope = c.param(w, "prelu1", lambda t: t.reshape(1))
    else:
        if x.rank < 2 or w.numel() != x.shape[1]:
            raise c.unsupported(f"PReLU with {w.numel()} slopes on shape {x.shape}")
        p = next((q for q in x.layouts if q[-1] == 1), chlast(x.rank))
        slope = c.param(w, "prelu", lambda t: t.reshape(-1))
    out = c.emit("prelu", [c.ir(x, p), slope])
    return c.new(out, p)


@handles("softmax", "_softmax")
def _h_softmax(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    if a.get("half_to_float"):
        raise c.unsupported("half_to_float softmax")
    d = int(a["dim"]) % max(x.rank, 1)
    p = x.primary
    out = c.emit("softmax", [x.layouts[p]], {"axis": p.index(d)})
    return c.new(out, p)


# ---------------------------------------------------------------- arithmetic
def _operand_const(c, v, rank, perm, has_full_rank_dyn):
    """IR constant for a tensor/scalar operand broadcast against a rank-``rank`` value in layout ``perm``."""
    if isinstance(v, torch.Tensor):
        arr = v.detach().to(torch.float32).cpu().numpy() if v.is_floating_point() or v.dtype == torch.bool \
            else v.detach().cpu().numpy().astype(np.float32)
        key_src = id(v)
    else:
        if isinstance(v, Sym) or not isinstance(v, (int, float, bool, np.number)):
            raise c.unsupported(f"operand of type {type(v).__name__}")
        arr = np.float32([v])
        return c.const(arr, hint=f"{c.base_name()}/scalar")
    if arr.ndim > rank:
        raise c.unsupported("constant operand of higher rank than the result")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    elif arr.ndim < rank and perm != ident(rank):
        arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
    if arr.ndim == rank and perm != ident(rank):
        arr = np.transpose(arr, perm)
    if has_full_rank_dyn:
        while arr.ndim > 1 and arr.shape[0] == 1:
            arr = arr[0]
    hint = c.tname(v, f"{c.base_name()}/const")
    return c.const(np.ascontiguousarray(arr), hint=hint, key=(key_src, "operand", perm, rank, has_full_rank_dyn))


def _binary(c, op, x, y, suffix=None):
    shape, dtype = c.out_shape()
    r = len(shape)
    dyns = [v for v in (x, y) if isinstance(v, Dyn)]
    for v in dyns:
        _need_float(c, v)
    perm = ident(r)
    for v in dyns:
        if v.rank == r and v.primary != ident(r):
            perm = v.primary
            break
    if any(v.rank < r for v in dyns):
        perm = ident(r)
    full = any(v.rank == r for v in dyns)
    names = []
    for v in (x, y):
        if isinstance(v, Dyn):
            names.append(c.ir(v, perm if v.rank == r else ident(v.rank)))
        else:
            names.append(_operand_const(c, v, r, perm, full))
    return c.emit(op, names, suffix=suffix), perm


def _scaled(c, v, alpha):
    if alpha is None or float(alpha) == 1.0:
        return v
    if isinstance(v, Dyn):
        perm = v.primary
        out = c.emit("mul", [v.layouts[perm], c.const(np.float32([alpha]))], suffix="alpha")
        d = Dyn(v.shape, v.dtype, out, perm)
        return d
    if isinstance(v, torch.Tensor):
        return v * alpha
    return v * alpha


@handles("add")
def _h_add(c, a):
    out, p = _binary(c, "add", a["self"], _scaled(c, a["other"], a.get("alpha")))
    return c.new(out, p)


@handles("sub")
def _h_sub(c, a):
    out, p = _binary(c, "sub", a["self"], _scaled(c, a["other"], a.get("alpha")))
    return c.new(out, p)


@handles("rsub")
def _h_rsub(c, a):
    out, p = _binary(c, "sub", a["other"], _scaled(c, a["self"], a.get("alpha")))
    return c.new(out, p)


@handles("mul")
def _h_mul(c, a):
    out, p = _binary(c, "mul", a["self"], a["other"])
    return c.new(out, p)


@handles("div", "true_divide")
def _h_div(c, a):
    if a.get("rounding_mode") is not None:
        raise c.unsupported(f"division with rounding_mode={a['rounding_mode']!r}")
    out, p = _binary(c, "div", a["self"], a["other"])
    return c.new(out, p)


@handles("reciprocal")
def _h_reciprocal(c, a):
    out, p = _binary(c, "div", 1.0, _need_dyn(c, a["self"]))
    return c.new(out, p)


@handles("neg")
def _h_neg(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    p = x.primary
    out = c.emit("mul", [x.layouts[p], c.const(np.float32([-1.0]))])
    return c.new(out, p)


@handles("square")
def _h_square(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    p = x.primary
    return c.new(c.emit("mul", [x.layouts[p], x.layouts[p]]), p)


@handles("pow")
def _h_pow(c, a):
    x = a.get("self")
    e = a.get("exponent")
    if isinstance(x, Dyn) and isinstance(e, (int, float)) and float(e) in (1.0, 2.0):
        _need_float(c, x)
        p = x.primary
        if float(e) == 1.0:
            return x
        return c.new(c.emit("mul", [x.layouts[p], x.layouts[p]]), p)
    raise c.unsupported("pow other than x ** 2")


# ---------------------------------------------------------------- linear algebra
@handles("linear")
def _h_linear(c, a):
    x = _need_float(c, _need_dyn(c, a["input"]))
    w, b = a["weight"], a.get("bias")
    r = x.rank
    p = next((q for q in [x.primary, *x.layouts] if q[-1] == r - 1), ident(r))
    xin = c.ir(x, p)
    if isinstance(w, torch.Tensor) and (b is None or isinstance(b, torch.Tensor)):
        if w.dim() != 2:
            raise c.unsupported(f"linear weight of shape {tuple(w.shape)}")
        ins = [xin, c.param(w, "", lambda t: t)]
        if b is not None:
            ins.append(c.param(b, "", lambda t: t))
        return c.new(c.emit("dense", ins), p)
    # weights computed in the graph: y = x @ w^T (+ b)
    wn = c.ir(_need_dyn(c, w), ident(w.rank)) if isinstance(w, Dyn) else c.const(w)
    if p != ident(r):
        xin = c.ir(x, ident(r))
        p = ident(r)
    out = c.emit("matmul", [xin, wn], {"trans_b": 1})
    if b is not None:
        bn = c.ir(b, ident(b.rank)) if isinstance(b, Dyn) else c.const(b)
        out = c.emit("add", [out, bn], suffix="bias")
    return c.new(out, p)


def _inner_kept(v: Dyn, perm):
    """Is some held layout of v laid out with the same innermost axis as ``perm`` (a cheap transpose)?"""
    return any(p[-1] == perm[-1] for p in v.layouts)


@handles("matmul", "mm", "bmm")
def _h_matmul(c, a):
    x, y = a["self"], a.get("other", a.get("mat2"))
    if "mat2" in a:
        y = a["mat2"]
    for v in (x, y):
        if isinstance(v, Dyn):
            _need_float(c, v)
        if (isinstance(v, Dyn) and v.rank < 2) or (isinstance(v, torch.Tensor) and v.dim() < 2):
            raise c.unsupported("matmul with a 1-D operand")
    if isinstance(x, Dyn) and isinstance(y, torch.Tensor) and y.dim() == 2:
        # x @ W with a constant W [K, N]: a dense layer with weights W^T [N, K]
        r = x.rank
        p = next((q for q in [x.primary, *x.layouts] if q[-1] == r - 1), ident(r))
        w = c.param(y, "matmul_t", lambda t: t.t().contiguous())
        return c.new(c.emit("dense", [c.ir(x, p), w]), p)
    shape, _ = c.out_shape()
    attrs = {}
    xn = c.ir(x, ident(x.rank)) if isinstance(x, Dyn) else c.const(x, hint=c.tname(x, None))
    if isinstance(y, Dyn):
        r = y.rank
        swapped = ident(r - 2) + (r - 1, r - 2)
        if ident(r) not in y.layouts and swapped in y.layouts:
            yn, attrs = y.layouts[swapped], {"trans_b": 1}  # y is held transposed: no transpose node
        elif ident(r) not in y.layouts and _inner_kept(y, swapped) and not _inner_kept(y, ident(r)):
            # e.g. k.transpose(-1, -2) of a head-split [B, S, H, D] tensor: moving it to [B, H, S, D] copies
            # D-long runs, to [B, H, D, S] would scatter every element; the kernel reads B transposed
            yn, attrs = c.ir(y, swapped), {"trans_b": 1}
        else:
            yn = c.ir(y, ident(r))
    else:
        yn = c.const(y, hint=c.tname(y, None))
    return c.new(c.emit("matmul", [xn, yn], attrs), ident(len(shape)))


@handles("addmm")
def _h_addmm(c, a):
    bias, x, w = a["self"], a["mat1"], a["mat2"]
    if float(a.get("beta", 1)) != 1.0 or float(a.get("alpha", 1)) != 1.0:
        raise c.unsupported("addmm with beta/alpha != 1")
    x = _need_float(c, _need_dyn(c, x))
    if isinstance(w, torch.Tensor) and isinstance(bias, torch.Tensor) and bias.dim() <= 1:
        wn = c.param(w, "matmul_t", lambda t: t.t().contiguous())
        bn = c.param(bias, "bias1d", lambda t: t.reshape(-1).expand(w.shape[1]).contiguous())
        return c.new(c.emit("dense", [c.ir(x, ident(2)), wn, bn]), ident(2))
    raise c.unsupported("addmm with computed weights")


# ---------------------------------------------------------------- convolution
def _same_pads(k, d):
    total = d * (k - 1)
    lo = total // 2
    return lo, total - lo


def _conv_common(c, a, nd):
    x = _need_float(c, _need_dyn(c, a["input"]))
    w, b = a["weight"], a.get("bias")
    if not isinstance(w, torch.Tensor) or not (b is None or isinstance(b, torch.Tensor)):
        raise c.unsupported("convolution with computed weights")
    if x.rank != nd + 2:
        raise c.unsupported(f"{nd}-D convolution of a rank-{x.rank} input (unbatched input?)")
    groups = int(a.get("groups") or 1)
    stride = _pair(a.get("stride") or 1, nd)
    dil = _pair(a.get("dilation") or 1, nd)
    pad = a.get("padding", 0)
    ks = list(w.shape[2:])
    if isinstance(pad, str):
        if pad == "valid":
            pads = [(0, 0)] * nd
        elif pad == "same":
            pads = [_same_pads(k, d) for k, d in zip(ks, dil)]
        else:
            raise c.unsupported(f"padding={pad!r}")
    else:
        pad = _pair(pad, nd)
        pads = [(p, p) for p in pad]
    return x, w, b, groups, stride, dil, pads


@handles("conv2d")
def _h_conv2d(c, a):
    x, w, b, groups, stride, dil, pads = _conv_common(c, a, 2)
    ins = [c.ir(x, NHWC), c.param(w, "ohwi", lambda t: t.permute(0, 2, 3, 1).contiguous())]
    if b is not None:
        ins.append(c.param(b, "", lambda t: t))
    attrs = {"strides": stride, "dilations": dil, "pads": [pads[0][0], pads[1][0], pads[0][1], pads[1][1]],
             "groups": groups}
    return c.new(c.emit("conv2d", ins, attrs), NHWC)


def _to_1d_as_2d(c, x: Dyn):
    """[N, C, L] -> IR [N, 1, L, C] (via the channels-last layout [N, L, C])."""
    src = c.ir(x, (0, 2, 1))
    return c.emit("reshape", [src], {"shape": [0, 1, -1, x.shape[1]]}, "as2d")


def _from_2d_as_1d(c, out4, channels):
    """IR [N, 1, L', C'] -> Dyn [N, C', L'] held channels-last."""
    out = c.emit("reshape", [out4], {"shape": [0, -1, int(channels)]}, "as1d")
    return c.new(out, (0, 2, 1))


@handles("conv1d")
def _h_conv1d(c, a):
    x, w, b, groups, stride, dil, pads = _conv_common(c, a, 1)
    x4 = _to_1d_as_2d(c, x)
    ins = [x4, c.param(w, "o1ki", lambda t: t.permute(0, 2, 1).unsqueeze(1).contiguous())]
    if b is not None:
        ins.append(c.param(b, "", lambda t: t))
    attrs = {"strides": [1, stride[0]], "dilations": [1, dil[0]], "pads": [0, pads[0][0], 0, pads[0][1]],
             "groups": groups}
    return _from_2d_as_1d(c, c.emit("conv2d", ins, attrs), w.shape[0])


# ---------------------------------------------------------------- normalisation
def _bn_consts(c, a, C):
    w, b, mean, var = a["weight"], a["bias"], a["running_mean"], a["running_var"]
    for t in (w, b, mean, var):
        if t is not None and not isinstance(t, torch.Tensor):
            raise c.unsupported("batch norm with computed parameters")
    ones, zeros = torch.ones(C), torch.zeros(C)
    g = c.param(w, "", lambda t: t) if w is not None else c.const(ones, hint=f"{c.base_name()}/gamma")
    be = c.param(b, "", lambda t: t) if b is not None else c.const(zeros, hint=f"{c.base_name()}/beta")
    return [g, be, c.param(mean, "", lambda t: t), c.param(var, "", lambda t: t)]


@handles("batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm")
def _h_batch_norm(c, a):
    x = _need_float(c, _need_dyn(c, a["input"]))
    name = c.node.target._schema.name
    training = a.get("training", False)
    if training or a.get("running_mean") is None or a.get("running_var") is None:
        raise c.unsupported("batch norm using batch statistics (training mode or track_running_stats=False)")
    if x.rank < 2:
        raise c.unsupported("batch norm of a 1-D tensor")
    C = x.shape[1]
    p = next((q for q in [x.primary, *x.layouts] if q[-1] == 1), chlast(x.rank))
    ins = [c.ir(x, p)] + _bn_consts(c, a, C)
    out = c.new(c.emit("batch_norm", ins, {"epsilon": float(a.get("eps", a.get("epsilon", 1e-5)))}), p,
                index=0 if name != "aten::batch_norm" else None)
    if name == "aten::batch_norm":
        return out
    return [out, None, None]


@handles("layer_norm")
def _h_layer_norm(c, a):
    x = _need_float(c, _need_dyn(c, a["input"]))
    ns = [int(d) for d in a["normalized_shape"]]
    w, b = a.get("weight"), a.get("bias")
    for t in (w, b):
        if t is not None and not isinstance(t, torch.Tensor):
            raise c.unsupported("layer norm with computed parameters")
    k = len(ns)
    r = x.rank
    if list(x.shape[r - k:]) != ns:
        raise c.unsupported(f"normalized_shape {ns} does not match the input's last dims {x.shape}")
    eps = float(a.get("eps", 1e-5))
    D = int(np.prod(ns))
    g = c.param(w, "flat", lambda t: t.reshape(-1)) if w is not None else c.const(np.ones(D, np.float32),
                                                                                   hint=f"{c.base_name()}/gamma")
    ins_gb = [g] + ([c.param(b, "flat", lambda t: t.reshape(-1))] if b is not None else [])
    if k == 1:
        p = next((q for q in [x.primary, *x.layouts] if q[-1] == r - 1), ident(r))
        return c.new(c.emit("layer_norm", [c.ir(x, p)] + ins_gb, {"epsilon": eps}), p)
    # several trailing dims: flatten them, normalise, restore the shape
    flat_shape = tuple(x.shape[:r - k]) + (D,)
    xf = c.reshape_to(x, flat_shape, "flat")
    y = c.emit("layer_norm", [xf] + ins_gb, {"epsilon": eps})
    y = c.reshape_node(y, flat_shape, x.shape, suffix="unflat")
    if y is None:
        raise c.unsupported("layer norm over a dynamic shape")
    return c.new(y, ident(r))


@handles("embedding")
def _h_embedding(c, a):
    w, ids = a["weight"], a["indices"]
    if not isinstance(w, torch.Tensor):
        raise c.unsupported("embedding with a computed table")
    ids = _need_dyn(c, ids, "ids")
    if ids.dtype not in ("int64", "int32"):
        raise c.unsupported(f"embedding ids of dtype {ids.dtype}")
    out = c.emit("embedding", [c.ir(ids, ident(ids.rank)), c.param(w, "", lambda t: t)])
    return c.new(out, ident(ids.rank + 1))


# ---------------------------------------------------------------- pooling
def _pool_pads(padding):
    ph, pw = _pair(padding or 0)
    return [ph, pw, ph, pw]


@handles("max_pool2d")
def _h_max_pool2d(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    k = _pair(a["kernel_size"])
    s = _pair(a["stride"]) if a.get("stride") else list(k)
    if any(d != 1 for d in _pair(a.get("dilation") or 1)):
        raise c.unsupported("max pooling with dilation")
    if x.rank != 4:
        raise c.unsupported("2-D pooling of a non-4-D tensor")
    attrs = {"kernel": k, "strides": s, "pads": _pool_pads(a.get("padding")), "ceil_mode": int(bool(a["ceil_mode"]))}
    return c.new(c.emit("max_pool", [c.ir(x, NHWC)], attrs), NHWC)


@handles("avg_pool2d")
def _h_avg_pool2d(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    if a.get("divisor_override") is not None:
        raise c.unsupported("avg pooling with divisor_override")
    if x.rank != 4:
        raise c.unsupported("2-D pooling of a non-4-D tensor")
    k = _pair(a["kernel_size"])
    s = _pair(a["stride"]) if a.get("stride") else list(k)
    attrs = {"kernel": k, "strides": s, "pads": _pool_pads(a.get("padding")), "ceil_mode": int(bool(a["ceil_mode"])),
             "count_include_pad": int(bool(a["count_include_pad"]))}
    return c.new(c.emit("avg_pool", [c.ir(x, NHWC)], attrs), NHWC)


@handles("max_pool1d", "avg_pool1d")
def _h_pool1d(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    if x.rank != 3:
        raise c.unsupported("1-D pooling of a non-3-D tensor")
    is_max = c.node.target._schema.name == "aten::max_pool1d"
    k = _pair(a["kernel_size"], 1)[0]
    s = _pair(a["stride"], 1)[0] if a.get("stride") else k
    p = _pair(a.get("padding") or 0, 1)[0]
    attrs = {"kernel": [1, k], "strides": [1, s], "pads": [0, p, 0, p], "ceil_mode": int(bool(a["ceil_mode"]))}
    if is_max:
        if _pair(a.get("dilation") or 1, 1)[0] != 1:
            raise c.unsupported("max pooling with dilation")
    else:
        attrs["count_include_pad"] = int(bool(a["count_include_pad"]))
    out = c.emit("max_pool" if is_max else "avg_pool", [_to_1d_as_2d(c, x)], attrs)
    return _from_2d_as_1d(c, out, x.shape[1])


def _adaptive(c, a, kind):
    x = _need_float(c, _need_dyn(c, a["self"]))
    if x.rank != 4:
        raise c.unsupported("adaptive 2-D pooling of a non-4-D tensor")
    H, W = x.shape[2], x.shape[3]
    osz = _pair(a["output_size"])
    oh, ow = [H if o is None else o for o in (osz[0],)][0], [W if o is None else o for o in (osz[1],)][0]
    if (oh, ow) == (1, 1):
        out = c.emit(f"global_{kind}_pool", [c.ir(x, NHWC)], {"keepdims": 1})
    elif isinstance(H, int) and isinstance(W, int) and H % oh == 0 and W % ow == 0:
        kh, kw = H // oh, W // ow
        out = c.emit(f"{kind}_pool", [c.ir(x, NHWC)], {"kernel": [kh, kw], "strides": [kh, kw]})
    else:
        raise c.unsupported(f"adaptive pooling from {H}x{W} to {oh}x{ow} (only to 1x1 or an even divisor)")
    return c.new(out, NHWC, index=0 if kind == "max" else None)


@handles("adaptive_avg_pool2d", "_adaptive_avg_pool2d")
def _h_adaptive_avg(c, a):
    return _adaptive(c, a, "avg")


@handles("adaptive_max_pool2d")
def _h_adaptive_max(c, a):
    return [_adaptive(c, a, "max"), None]


@handles("adaptive_avg_pool1d")
def _h_adaptive_avg1d(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    (o,) = _pair(a["output_size"], 1)
    if o != 1 or x.rank != 3:
        raise c.unsupported("adaptive 1-D pooling to a size other than 1")
    p = x.primary
    out = c.emit("reduce_mean", [x.layouts[p]], {"axes": [p.index(2)], "keepdims": 1})
    return c.new(out, p)


# ---------------------------------------------------------------- reductions
def _reduce_dims(x: Dyn, dims):
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(x.rank))
    if isinstance(dims, int):
        dims = [dims]
    return sorted({int(d) % x.rank for d in dims})


def _reduced_perm(p, dims, keep):
    if keep:
        return p
    rest = [d for d in range(len(p)) if d not in dims]
    renum = {d: i for i, d in enumerate(rest)}
    return tuple(renum[d] for d in p if d not in dims)


@handles("mean")
def _h_mean(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    if a.get("dtype") not in (None, torch.float32):
        raise c.unsupported(f"mean with dtype={a['dtype']}")
    dims = _reduce_dims(x, a.get("dim"))
    out, p = _reduce_mean(c, x, dims, a.get("keepdim", False))
    return c.new(out, p)


def _reduce_mean(c, x, dims, keep):
    p = x.primary
    if x.rank == 4 and p == NHWC and dims == [2, 3]:
        out = c.emit("global_avg_pool", [x.layouts[p]], {"keepdims": int(bool(keep))})
    else:
        out = c.emit("reduce_mean", [x.layouts[p]], {"axes": sorted(p.index(d) for d in dims),
                                                      "keepdims": int(bool(keep))})
    return out, _reduced_perm(p, dims, keep)


@handles("sum")
def _h_sum(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    if a.get("dtype") not in (None, torch.float32):
        raise c.unsupported(f"sum with dtype={a['dtype']}")
    dims = _reduce_dims(x, a.get("dim"))
    count = 1
    for d in dims:
        if not isinstance(x.shape[d], int):
            raise c.unsupported("sum over the dynamic batch dimension")
        count *= x.shape[d]
    out, p = _reduce_mean(c, x, dims, a.get("keepdim", False))
    out = c.emit("mul", [out, c.const(np.float32([count]))], suffix="count")
    return c.new(out, p)


@handles("amax")
def _h_amax(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    dims = _reduce_dims(x, a.get("dim"))
    p = x.primary
    keep = a.get("keepdim", False)
    if x.rank == 4 and p == NHWC and dims == [2, 3]:
        out = c.emit("global_max_pool", [x.layouts[p]], {"keepdims": int(bool(keep))})
    else:
        out = c.emit("reduce_max", [x.layouts[p]], {"axes": sorted(p.index(d) for d in dims),
                                                     "keepdims": int(bool(keep))})
    return c.new(out, _reduced_perm(p, dims, keep))


# ---------------------------------------------------------------- shape ops
def _reshape_like(c, x: Dyn):
    shape, _ = c.out_shape()
    out = c.reshape_to(_need_dyn(c, x), shape)
    if out in x.layouts.values():  # no-op reshape
        return Dyn(shape, x.dtype, out, ident(len(shape)))
    return c.new(out, ident(len(shape)))


@handles("view", "reshape", "_unsafe_view", "unflatten")
def _h_view(c, a):
    return _reshape_like(c, _need_dyn(c, a["self"]))


@handles("flatten")
def _h_flatten(c, a):
    x = _need_dyn(c, a["self"])
    r = x.rank
    if r == 0:
        return _reshape_like(c, x)
    s = int(a.get("start_dim", 0)) % r
    e = int(a.get("end_dim", -1)) % r
    if s == e:
        return x
    p, src = c.compatible(x)
    if e == r - 1 and p[:s] == ident(s):
        return c.new(c.emit("flatten", [src], {"axis": s}), ident(s + 1))
    return _reshape_like(c, x)


def _drop_unit_axes(c, x: Dyn, dims):
    """Squeeze torch dims ``dims`` (all size 1) in x's own layout: a reshape, no data movement."""
    p = x.primary
    src = x.layouts[p]
    keep_ir = [i for i in range(x.rank) if p[i] not in dims]
    new_perm = _reduced_perm(p, dims, False)
    in_shape = x.ir_shape(p)
    out_ir = tuple(in_shape[i] for i in keep_ir)
    if not dims:
        return x
    out = c.reshape_node(src, in_shape, out_ir)
    if out is None:
        raise c.unsupported("squeezing a tensor with several dynamic dimensions")
    shape = tuple(d for i, d in enumerate(x.shape) if i not in dims)
    return Dyn(shape, x.dtype, out, new_perm)


@handles("squeeze")
def _h_squeeze(c, a):
    x = _need_dyn(c, a["self"])
    d = a.get("dim", a.get("dims"))
    if "dims" in a and a["dims"] is not None:
        d = a["dims"]
    dims = list(range(x.rank)) if d is None else ([d] if isinstance(d, int) else list(d))
    dims = sorted({int(e) % max(x.rank, 1) for e in dims if x.shape[int(e) % max(x.rank, 1)] == 1})
    return _drop_unit_axes(c, x, dims)


@handles("unsqueeze")
def _h_unsqueeze(c, a):
    x = _need_dyn(c, a["self"])
    r = x.rank + 1
    d = int(a["dim"]) % r
    p = x.primary
    renum = [q + 1 if q >= d else q for q in p]
    pos = next((i for i, q in enumerate(p) if q >= d), len(p))
    new_perm = tuple(renum[:pos]) + (d,) + tuple(renum[pos:])
    in_shape = x.ir_shape(p)
    shape, _ = c.out_shape()
    out_ir = tuple(shape[q] for q in new_perm)
    out = c.reshape_node(x.layouts[p], in_shape, out_ir)
    if out is None:
        return _reshape_like(c, x)
    return c.new(out, new_perm)


def _permuted(c, x: Dyn, q):
    """torch ``x.permute(q)``: no node, only the layouts' permutations change."""
    q = [int(e) % x.rank for e in q]
    shape, _ = c.out_shape()
    y = Dyn(shape, x.dtype, x.layouts[x.primary], tuple(q.index(x.primary[i]) for i in range(x.rank)))
    for p, n in x.layouts.items():
        y.layouts.setdefault(tuple(q.index(p[i]) for i in range(x.rank)), n)
    return y


@handles("permute")
def _h_permute(c, a):
    return _permuted(c, _need_dyn(c, a["self"]), a["dims"])


@handles("transpose", "swapaxes", "swapdims")
def _h_transpose(c, a):
    x = _need_dyn(c, a["self"])
    d0 = a.get("dim0", a.get("axis0"))
    d1 = a.get("dim1", a.get("axis1"))
    q = list(range(x.rank))
    d0, d1 = int(d0) % x.rank, int(d1) % x.rank
    q[d0], q[d1] = q[d1], q[d0]
    return _permuted(c, x, q)


@handles("t", "numpy_T")
def _h_t(c, a):
    x = _need_dyn(c, a["self"])
    return _permuted(c, x, list(range(x.rank))[::-1])


@handles("movedim")
def _h_movedim(c, a):
    x = _need_dyn(c, a["self"])
    src, dst = a["source"], a["destination"]
    src = [src] if isinstance(src, int) else list(src)
    dst = [dst] if isinstance(dst, int) else list(dst)
    src = [s % x.rank for s in src]
    dst = [d % x.rank for d in dst]
    q = [None] * x.rank
    for s, d in zip(src, dst):
        q[d] = s
    rest = iter([i for i in range(x.rank) if i not in src])
    q = [e if e is not None else next(rest) for e in q]
    return _permuted(c, x, q)


def _norm_range(start, end, n):
    start = 0 if start is None else int(start)
    end = INT64_MAX if end is None else int(end)
    if isinstance(n, int):
        start = start + n if start < 0 else start
        end = end + n if end < 0 else end
        start = min(max(start, 0), n)
        end = min(max(end, start), n)
    return start, end


def _slice(c, x: Dyn, p, dim, start, end, suffix=None):
    return c.emit("slice", [c.ir(x, p)], {"axes": [p.index(dim)], "starts": [int(start)], "ends": [int(end)]},
                  suffix)


def _slice_to_sym(c, x, dim, start, end: Sym):
    """``x[start : end]`` along ``dim`` where ``end`` is a symbolic size (``table[:ids.size(1)]``): a
    ``slice_like`` reading the length from the graph input that carries the symbol."""
    if end.expr not in c.sym_ref:
        raise c.unsupported(f"slice ending at the computed size {end.expr}")
    start = 0 if start is None else start
    if not isinstance(start, int) or start < 0:
        raise c.unsupported("slice to a dynamic size from a negative or dynamic start")
    vname, rd = c.sym_ref[end.expr]
    if isinstance(x, Dyn):
        n = x.shape[dim]
        if start == 0 and n == end.expr:
            return x
        p = x.primary
        src, axis = x.layouts[p], p.index(dim)
    else:
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            raise c.unsupported("slice of a non-tensor")
        p = ident(x.dim())
        src, axis = c.const(x, hint=c.tname(x, None)), dim
    attrs = {"axes": [axis], "starts": [start], "ref_axes": [rd]}
    if isinstance(x, Dyn):
        return c.new(c.emit("slice_like", [src, vname], attrs), p)
    # a table cut to an input's length (position embeddings): named after the table for the error message
    name = c.m.add_node("slice_like", [src, vname], attrs, name=f"{c.tname(x, c.base_name())}[:{vname}.shape[{rd}]]")
    return c.new(name, p)


@handles("slice")
def _h_slice(c, a):
    x = a["self"]
    if int(a.get("step", 1) or 1) != 1:
        raise c.unsupported("slicing with a step")
    if isinstance(a.get("end"), Sym) and isinstance(x, (Dyn, torch.Tensor)):
        r = x.rank if isinstance(x, Dyn) else x.dim()
        return _slice_to_sym(c, x, int(a.get("dim", 0)) % max(r, 1), a.get("start"), a["end"])
    x = _need_dyn(c, x)
    dim = int(a.get("dim", 0)) % x.rank
    n = x.shape[dim]
    start, end = _norm_range(a.get("start"), a.get("end"), n)
    if start == 0 and (end >= INT64_MAX or (isinstance(n, int) and end >= n)):
        return x
    if not isinstance(n, int) and (start < 0 or end < 0):
        raise c.unsupported("slicing the dynamic batch from its end")
    p = x.primary
    return c.new(_slice(c, x, p, dim, start, end), p)


@handles("select")
def _h_select(c, a):
    x = _need_dyn(c, a["self"])
    dim = int(a["dim"]) % x.rank
    n = x.shape[dim]
    i = int(a["index"])
    if i < 0:
        if not isinstance(n, int):
            raise c.unsupported("selecting from the end of the dynamic batch")
        i += n
    p = x.primary
    sl = _slice(c, x, p, dim, i, i + 1)
    shape = list(x.shape)
    shape[dim] = 1
    return _drop_unit_axes(c, Dyn(shape, x.dtype, sl, p), [dim])


def _split_sizes(c, x, dim, sizes):
    p = x.primary
    outs, start = [], 0
    for i, s in enumerate(sizes):
        shape = list(x.shape)
        shape[dim] = s
        outs.append(Dyn(shape, x.dtype, _slice(c, x, p, dim, start, start + s, f"part{i}"), p))
        start += s
    return outs


def _static_dim(c, x, dim):
    n = x.shape[dim]
    if not isinstance(n, int):
        raise c.unsupported("splitting the dynamic batch dimension")
    return n


@handles("split", "split_with_sizes")
def _h_split(c, a):
    x = _need_dyn(c, a["self"])
    dim = int(a.get("dim", 0)) % x.rank
    n = _static_dim(c, x, dim)
    s = a.get("split_size", a.get("split_sizes", a.get("split_size_or_sections")))
    if isinstance(s, (list, tuple)):
        sizes = [int(e) for e in s]
    else:
        s = int(s)
        sizes = [s] * (n // s) + ([n % s] if n % s else [])
    return _split_sizes(c, x, dim, sizes)


@handles("chunk")
def _h_chunk(c, a):
    x = _need_dyn(c, a["self"])
    dim = int(a.get("dim", 0)) % x.rank
    n = _static_dim(c, x, dim)
    k = int(a["chunks"])
    s = -(-n // k)
    sizes = [s] * (n // s) + ([n % s] if n % s else [])
    return _split_sizes(c, x, dim, sizes)


@handles("unbind")
def _h_unbind(c, a):
    x = _need_dyn(c, a["self"])
    dim = int(a.get("dim", 0)) % x.rank
    n = _static_dim(c, x, dim)
    return [_drop_unit_axes(c, part, [dim]) for part in _split_sizes(c, x, dim, [1] * n)]


@handles("cat", "concat", "concatenate")
def _h_cat(c, a):
    ts = [t for t in a["tensors"] if not (isinstance(t, torch.Tensor) and t.numel() == 0 and t.dim() == 1)]
    dyns = [t for t in ts if isinstance(t, Dyn)]
    if not dyns:
        raise c.unsupported("concatenation of constants only")
    r = dyns[0].rank
    dim = int(a.get("dim", 0)) % r
    votes = {}
    for t in dyns:
        votes[t.primary] = votes.get(t.primary, 0) + 1
    perm = max(votes, key=lambda k: (votes[k], k == dyns[0].primary))
    names = []
    for t in ts:
        if isinstance(t, Dyn):
            names.append(c.ir(t, perm))
        else:
            arr = t.detach().to(torch.float32).numpy()
            names.append(c.const(np.ascontiguousarray(np.transpose(arr, perm)), hint=c.tname(t, None)))
    if len(names) == 1:
        return Dyn(c.out_shape()[0], dyns[0].dtype, names[0], perm)
    return c.new(c.emit("concat", names, {"axis": perm.index(dim)}), perm)


@handles("pad", "constant_pad_nd")
def _h_pad(c, a):
    x = _need_float(c, _need_dyn(c, a["self"]))
    pad = [int(e) for e in a["pad"]]
    mode = a.get("mode") or "constant"
    value = a.get("value")
    value = 0.0 if value is None else float(value)
    if len(pad) % 2 or len(pad) // 2 > x.rank:
        raise c.unsupported(f"pad list {pad}")
    if any(e < 0 for e in pad):
        raise c.unsupported("negative padding (cropping)")
    r = x.rank
    per_dim = {r - 1 - i: (pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)}
    p = x.primary
    if mode == "constant":
        begins = [per_dim.get(p[j], (0, 0))[0] for j in range(r)]
        ends = [per_dim.get(p[j], (0, 0))[1] for j in range(r)]
        out = c.emit("pad", [x.layouts[p]], {"pads": begins + ends, "value": value})
        return c.new(out, p)
    if mode not in ("reflect", "replicate", "circular"):
        raise c.unsupported(f"padding mode {mode!r}")
    cur = Dyn(x.shape, x.dtype, x.layouts[p], p)
    for d, (lo, hi) in sorted(per_dim.items()):
        if lo == 0 and hi == 0:
            continue
        n = cur.shape[d]
        if not isinstance(n, int):
            raise c.unsupported(f"{mode} padding of the dynamic batch")
        if mode == "reflect" and (lo >= n or hi >= n):
            raise c.unsupported("reflect padding wider than the input")
        if mode == "circular" and (lo > n or hi > n):
            raise c.unsupported("circular padding wider than the input")
        cache = {}

        def piece(s, e):
            if (s, e) not in cache:
                cache[(s, e)] = _slice(c, cur, p, d, s, e, f"{mode}{d}")
            return cache[(s, e)]

        if mode == "reflect":
            left = [piece(i, i + 1) for i in range(lo, 0, -1)]
            right = [piece(n - 1 - i, n - i) for i in range(1, hi + 1)]
        elif mode == "replicate":
            left = [piece(0, 1)] * lo
            right = [piece(n - 1, n)] * hi
        else:
            left = [piece(n - lo, n)] if lo else []
            right = [piece(0, hi)] if hi else []
        parts = left + [cur.layouts[p]] + right
        if len(parts) > 64:
            raise c.unsupported("padding wider than 63")
        out = c.emit("concat", parts, {"axis": p.index(d)}, f"{mode}_pad{d}")
        shape = list(cur.shape)
        shape[d] = n + lo + hi
        cur = Dyn(shape, cur.dtype, out, p)
    return cur


@handles("expand")
def _h_expand(c, a):
    x = _need_dyn(c, a["self"])
    shape, _ = c.out_shape()
    if tuple(shape) == x.shape:
        return x
    r = len(shape)
    if x.rank != r or x.dtype != "float32":
        raise c.unsupported("expand of a lower-rank or integer tensor")
    grow = [i for i in range(r) if shape[i] != x.shape[i]]
    if any(x.shape[i] != 1 or not isinstance(shape[i], int) for i in grow):
        raise c.unsupported(f"expand from {x.shape} to {shape} (only size-1 axes to static sizes)")
    # materialise the broadcast: x + zeros of the grown axes (add broadcasts numpy-style; exact for every value)
    p = x.primary
    zshape = [shape[q] if q in grow else 1 for q in p]
    z = c.const(np.zeros(zshape, np.float32), hint=f"{c.base_name()}/expand_zeros")
    return c.new(c.emit("add", [x.layouts[p], z], suffix="expand"), p)


@handles("scaled_dot_product_attention")
def _h_sdpa(c, a):
    """softmax(q @ k^T * scale + mask) @ v, decomposed into matmul / scaled_masked_softmax / matmul (or
    mul / add / softmax when the mask does not broadcast into the scores)."""
    q, k, v = (_need_float(c, _need_dyn(c, a[n])) for n in ("query", "key", "value"))
    if float(a.get("dropout_p") or 0.0) != 0.0:
        raise c.unsupported("attention dropout")
    if a.get("enable_gqa"):
        raise c.unsupported("grouped-query attention")
    if q.rank < 2 or k.rank != q.rank or v.rank != q.rank:
        raise c.unsupported("attention operands of different ranks")
    r = q.rank
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = a.get("scale")
    scale = 1.0 / float(np.sqrt(E)) if scale is None else float(scale)
    qn = c.ir(q, ident(r))
    swapped = ident(r - 2) + (r - 1, r - 2)
    if ident(r) not in k.layouts and swapped in k.layouts:
        kn, attrs = k.layouts[swapped], {}
    else:
        kn, attrs = c.ir(k, ident(r)), {"trans_b": 1}
    scores = c.emit("matmul", [qn, kn], attrs, "scores")
    score_shape = tuple(q.shape[:-1]) + (S,)
    mask = a.get("attn_mask")
    mn = mshape = None
    if a.get("is_causal"):  # (torch refuses is_causal together with attn_mask)
        if not (isinstance(L, int) and isinstance(S, int)):
            raise c.unsupported("causal attention over a dynamic sequence length")
        tri = np.where(np.tril(np.ones((L, S), bool)), 0.0, -np.inf).astype(np.float32)
        mn, mshape = c.const(tri), tri.shape
    elif mask is not None:
        if isinstance(mask, Dyn):
            if mask.dtype != "float32":
                raise c.unsupported("a boolean/integer attention mask computed in the graph (pass an additive "
                                    "float mask)")
            mn, mshape = c.ir(mask, ident(mask.rank)), mask.shape
        else:
            m = mask.detach()
            if m.dtype == torch.bool:
                m = torch.zeros(m.shape).masked_fill(~m, float("-inf"))
            mn, mshape = c.const(m.to(torch.float32)), tuple(m.shape)
    # softmax(scores * scale + mask) as one node when the mask broadcasts into the scores (scale > 0: schema)
    if scale > 0 and (mn is None or _bcast_into(tuple(mshape), score_shape)):
        probs = c.emit("scaled_masked_softmax", [scores] + ([mn] if mn is not None else []), {"scale": float(scale)},
                       "softmax")
    else:
        scores = c.emit("mul", [scores, c.const(np.float32([scale]))], suffix="scale")
        if mn is not None:
            scores = c.emit("add", [scores, mn], suffix="mask")
        probs = c.emit("softmax", [scores], {"axis": -1}, "softmax")
    out = c.emit("matmul", [probs, c.ir(v, ident(r))], suffix="context")
    return c.new(out, ident(r))


@handles("zeros_like", "ones_like", "full_like")
def _h_like(c, a):
    raise c.unsupported("tensor factories from model values")


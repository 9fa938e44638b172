"""PyTorch importer: ``from_torch(module, example_inputs)`` turns an ``nn.Module`` into an IR ``Model``.

Tracing
-------
The module is traced with ``torch.export.export(..., strict=False)`` and **no decompositions**, so the
graph keeps high-level ATen ops (``aten.conv2d``, ``aten.linear``, ``aten.batch_norm``, ``aten.max_pool2d``
...) with normalised argument lists; parameters and buffers arrive as placeholders that
``ep.graph_signature.inputs_to_parameters`` / ``inputs_to_buffers`` map to their state-dict names.

Why torch.export and not ``torch.fx.symbolic_trace``: measured on the eleven test architectures of
``tests/torch_models.py`` both trace all of them, but symbolic_trace leaves ``call_module`` nodes and the
raw functional forms (``F.conv2d`` with positional/keyword mixes, ``x.view(x.size(0), -1)`` as
``getattr``/``size`` proxies, ``torch.flatten`` vs ``Tensor.flatten`` vs ``nn.Flatten`` ...), i.e. three
spellings of every op to map, and it cannot trace a module that branches on a tensor's shape
(``if x.dim() == 4``, ``if x.size(1) != c``). torch.export runs the real Python code on fake tensors
with *symbolic* shapes, so shape-dependent code traces, every op arrives as one ATen overload with
its schema (argument defaults filled in, see ``_bind``), the output shape of every node is known
(``node.meta["val"]``, used for reshapes whose sizes come from ``x.size(0)``) and each node records
the module it came from (``node.meta["nn_module_stack"]``, used in error messages).

Dynamic batch
-------------
Dim 0 of every tensor input is marked ``Dim.AUTO``. A batch of 1 would be specialised by the tracer
(0/1 specialisation), so a batch-1 example is repeated to batch 2 for tracing. If the code pins the
batch (``x.view(2, -1)``), the module is re-exported with the example as given and the converted model
accepts only that batch (a ``UserWarning`` says so).

Dynamic sequence length
-----------------------
With ``dynamic_seq`` (default: try), dim 1 of every rank-2/3 input with at least 2 positions (``[B, S]`` ids
and masks, ``[B, S, D]`` features) is marked ``Dim.AUTO`` as well; code that needs a fixed size there (a
Linear over a ``[B, F]`` input, a conv's channels) makes the tracer specialise it, which costs nothing. The
traced sizes are then symbols (``s41``, ``4*s31``) and the converter lowers what depends on them to ops the
runtime evaluates from the input shapes at run time:

* reshapes the IR ``reshape`` can say (0 = copy the dim at the same position, one -1) stay ``reshape``;
  others (``[B*S, D] -> [B, S, D]``, ``[B, H, 1, S] -> [B*H, 1, S]``) become ``reshape_dims``, which reads each
  symbolic size from the graph input that carries it (only its shape; the input stays zero-copy);
* ``table[:x.size(1)]`` (BERT's position embeddings, learned positions) and ``x[:, :y.size(1)]`` become
  ``slice_like``; a length beyond the table raises ``InputError`` at run time naming the table and both sizes
  (e.g. a BERT input longer than ``max_position_embeddings``).

If the model cannot be traced or converted with a dynamic length (causal attention builds its mask from a
fixed length; an op needs a static size), it is converted again with the example's length and a
``UserWarning`` names the reason; ``dynamic_seq=True`` raises ``UnsupportedError`` instead, ``False`` never
tries.

Layout
------
The converted model takes and returns tensors in PyTorch's own layout (NCHW). Inside, each traced
tensor ``t`` is held as ``t.permute(perm)`` for some ``perm`` (several may be cached): convolutions and
pooling want ``(0, 2, 3, 1)`` (NHWC), everything else takes whatever it is given and remaps its axis
arguments (cat dim, softmax dim, mean dims, pads, slice dim, BN/PReLU channel, constants of shape
``[C, 1, 1]`` become ``[1, 1, C]``). ``permute``/``transpose`` only change ``perm`` (no node). Ops whose
result depends on memory order (view, reshape, flatten) first bring the tensor to an order whose
non-unit axes follow PyTorch's (so ``[N, C, 1, 1]`` after global pooling needs no transpose); a layout
change that only moves size-1 axes is emitted as a ``reshape``. A conv stack, residual adds and a
global-pool + linear head cost one transpose (the input); a ``x.permute(0, 2, 3, 1).flatten(1)`` head
costs none beyond it.

Transformer encoders
--------------------
``torch.nn.TransformerEncoder(Layer)`` (``batch_first=True``, eval) traces to ``aten.scaled_dot_product_attention``,
which the converter lowers to ``matmul`` (q @ k^T) -> ``scaled_masked_softmax`` (scale and mask fused in one
pass over the scores) -> ``matmul`` (@ v). A ``src_key_padding_mask`` must be passed as an **additive float**
mask (0 for tokens, ``-inf`` or a large negative number for padding): slimrt graph inputs are float32 or int
ids, never bool. Eager attention code (Hugging Face's ``softmax(q @ k^T * scaling + mask)``) arrives as
separate ``mul`` / ``add`` / ``softmax`` nodes; ``fuse_masked_softmax`` (torch_convert.py) rewrites that pattern
into the same single node after conversion, then ``fuse_attention`` turns the whole block -- head split
(reshape + transpose of the q/k/v projections), q @ k^T, the fused softmax, @ v, head merge -- into one
``attention`` node that reads the heads' columns in place (no transposes; each head's scores stay in cache).
``nn.MultiheadAttention``'s own traced form (one packed in-projection, sequence-first head split by slices and
transposes) becomes the same node through ``fuse_packed_attention``, and the optimizer's ``sink_transposes`` moves
the batch/sequence transposes left around it through the layer until they cancel.
Both sequence length and batch are dynamic (see above).

A Hugging Face ``transformers.BertModel`` is imported through ``BertForExport`` (applied automatically by
``from_torch``): it calls the model's own embedding, encoder and pooler modules, but builds the additive
attention mask itself as ``embedding(attention_mask, [[finfo.min], [0]])`` -- a table lookup that turns the
int64 0/1 mask into the float mask HF's eager attention adds, with ops the IR has (the transformers 5 mask
builder traces to ``index``/``where``/bool ops slimrt does not run). Inputs ``input_ids``, ``attention_mask``
(int64, values 0/1; anything else is refused at run time as an out-of-range id), optional ``token_type_ids``;
outputs ``last_hidden_state``, ``pooler_output`` (when the model has a pooler) and ``mean_pooled`` (the masked
mean over tokens, computed in the graph). One converted model serves every batch and every length up to
``max_position_embeddings``. ``cls_pool`` / ``masked_mean_pool`` are numpy helpers for the same poolings on any
output.

Refusals
--------
An op slimrt cannot run raises ``UnsupportedError`` naming the ATen op and the module path and class
it came from. State dicts are read by ``load_state_dict`` with ``torch.load(weights_only=True)`` only.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import FormatError, InputError, UnsupportedError

__all__ = ["from_torch", "load_state_dict", "export", "BertForExport", "cls_pool", "masked_mean_pool"]


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is an optional dependency
        raise UnsupportedError("from_torch needs PyTorch (pip install torch)") from e
    return torch


def _as_args(torch, example_inputs):
    if isinstance(example_inputs, dict):
        raise InputError("example_inputs must be a tensor or a tuple of tensors (positional arguments of forward)")
    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    out = []
    for a in example_inputs:
        if isinstance(a, np.ndarray):
            a = torch.from_numpy(np.ascontiguousarray(a))
        out.append(a)
    return tuple(out)


def _is_symbolic(d):
    """A traced size that is a real symbol (not an int, nor a SymInt the tracer specialised)."""
    if isinstance(d, int):
        return False
    expr = getattr(getattr(d, "node", None), "expr", None)
    return expr is not None and not getattr(expr, "is_number", False)


def _dim0_dynamic(ep, n_user):
    """For each user input placeholder of ``ep``: is dim 0 symbolic?"""
    torch = _torch()
    user = [n for n in ep.graph.nodes if n.op == "placeholder" and n.name in set(ep.graph_signature.user_inputs)]
    flags = []
    for n in user[:n_user]:
        v = n.meta.get("val")
        flags.append(isinstance(v, torch.Tensor) and v.dim() >= 1 and _is_symbolic(v.shape[0]))
    return flags


def export(module, example_inputs, *, dynamic_batch: bool = True, dynamic_seq: bool = False):
    """Traces ``module`` (in eval mode) with ``torch.export`` as the importer does; returns the ExportedProgram.

    Dim 0 of each tensor input is made dynamic where the code allows it; with ``dynamic_seq`` dim 1 of
    each rank-2/3 input too (see the module docstring).
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    args = _as_args(torch, example_inputs)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return _export(torch, module, args, dynamic_batch, dynamic_seq)
    finally:
        module.train(was_training)


def _seq_pos(torch, args):
    """Arguments whose dim 1 may be a sequence length: rank-2 ([B, S] ids or masks) or rank-3 ([B, S, D])
    tensors with at least 2 positions (a length-1 example would be specialised by the tracer)."""
    return [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.dim() in (2, 3) and a.shape[1] >= 2]


def _dynamic_spec(torch, module, args, tensor_pos, seq_pos=()):
    """``dynamic_shapes`` marking dim 0 of the tensor arguments (and dim 1 of those in ``seq_pos``), shaped like
    forward's signature (a ``forward(self, *xs)`` needs its specs grouped under ``xs``)."""
    auto = torch.export.Dim.AUTO
    specs = [({0: auto, 1: auto} if i in seq_pos else {0: auto}) if i in tensor_pos else None
             for i in range(len(args))]
    import inspect

    try:
        sig = inspect.signature(module.forward)
        bound = sig.bind(*range(len(args)))  # bind positions, not values
    except (TypeError, ValueError):
        return tuple(specs)
    out = {}
    for name, pos in bound.arguments.items():
        if sig.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
            out[name] = tuple(specs[i] for i in pos)
        elif isinstance(pos, int):
            out[name] = specs[pos]
        else:
            return tuple(specs)
    return out


class _SeqNotDynamic(Exception):
    """Tracing with a dynamic sequence dimension failed (the caller retries with a dynamic batch only)."""


def _export(torch, module, args, dynamic_batch, dynamic_seq=False):
    cls = type(module).__qualname__
    tensor_pos = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.dim() >= 1]
    seq_pos = _seq_pos(torch, args) if dynamic_seq else []
    errors = []
    if dynamic_batch and tensor_pos:
        doubled = any(args[i].shape[0] == 1 for i in tensor_pos)
        trace_args = tuple(torch.cat([a, a]) if (i in tensor_pos and a.shape[0] == 1) else a
                           for i, a in enumerate(args))
        dyn = _dynamic_spec(torch, module, trace_args, tensor_pos, seq_pos)
        try:
            ep = torch.export.export(module, trace_args, dynamic_shapes=dyn, strict=False)
            flags = _dim0_dynamic(ep, len(args))
            dyn_ok = [flags[i] for i in tensor_pos if i < len(flags)]
            if all(dyn_ok):
                return ep
            if not doubled:  # torch kept the given batch: that is the model's batch
                warnings.warn(f"{cls}: the batch dimension of some inputs is fixed by the model's code; the "
                              "converted model only accepts the example's batch size there", stacklevel=4)
                return ep
            errors.append("the code fixes the batch size")
        except Exception as e:  # noqa: BLE001 - retried statically below, reported if that fails too
            if seq_pos:  # from_torch retries with a dynamic batch only
                raise _SeqNotDynamic(f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}") from e
            errors.append(f"{type(e).__name__}: {e}")
    try:
        ep = torch.export.export(module, args, strict=False)
    except Exception as e:  # noqa: BLE001 - any tracer failure means: this module cannot be imported
        msg = str(e).strip().splitlines()
        raise UnsupportedError(f"torch.export could not trace module {cls}: {type(e).__name__}: "
                               f"{msg[0] if msg else ''}") from e
    if dynamic_batch and tensor_pos:
        batches = sorted({int(args[i].shape[0]) for i in tensor_pos})
        warnings.warn(f"{cls}: could not make the batch dimension dynamic ({errors[0] if errors else ''}); the "
                      f"converted model only accepts batch size {batches}", stacklevel=4)
    return ep


def from_torch(module, example_inputs, *, dynamic_batch: bool = True, dynamic_seq=None, input_names=None,
               output_names=None):
    """Converts a PyTorch ``nn.Module`` traced on ``example_inputs`` to a slimrt ``Model``.

    ``example_inputs``: a tensor (or numpy array) or a tuple of them, the positional arguments of
    ``forward``. The module is traced in eval mode (its mode is restored afterwards). The converted
    model takes and returns PyTorch's layout (NCHW feature maps); nested outputs are flattened in
    ``torch.utils._pytree`` order. Inputs are named after ``forward``'s parameters unless
    ``input_names`` is given; outputs are ``output`` (one) or ``output_<i>`` unless ``output_names``.

    ``dynamic_seq``: make dim 1 of the rank-2/3 inputs (``[B, S]`` ids and masks, ``[B, S, D]`` features)
    dynamic as well, so one model serves every sequence length (see "Dynamic sequence length" in the module
    docstring). ``None`` (default): try it, and fall back to a fixed length if the model cannot be traced or
    converted that way (with a ``UserWarning`` naming the reason when the length stays fixed only for that);
    ``True``: fail instead; ``False``: fixed length. Applies with ``dynamic_batch`` only.

    Raises ``UnsupportedError`` for an op slimrt cannot run (naming the op and the module path),
    ``InputError`` for bad arguments.
    """
    from .torch_convert import Converter

    if _is_hf_bert(module):
        module = BertForExport(module)
        if output_names is None:
            output_names = list(BertForExport.OUTPUT_NAMES[:3 if module.bert.pooler is not None else 2])
            if module.bert.pooler is None:
                output_names = ["last_hidden_state", "mean_pooled"]
        if input_names is None:
            n = len(example_inputs) if isinstance(example_inputs, (tuple, list)) else 1
            input_names = ["input_ids", "attention_mask", "token_type_ids"][:n]
    root = type(module).__qualname__
    model = None
    if dynamic_seq is not False and dynamic_batch:
        try:
            ep = export(module, example_inputs, dynamic_batch=True, dynamic_seq=True)
            model = Converter(ep, root_class=root).convert(input_names=input_names, output_names=output_names)
        except (_SeqNotDynamic, UnsupportedError) as e:
            if dynamic_seq:
                raise UnsupportedError(f"{root}: cannot convert with a dynamic sequence length: {e}") from e
            # with a fixed length (errors from here on are the model's own, raised as they come)
            ep = export(module, example_inputs, dynamic_batch=True)
            model = Converter(ep, root_class=root).convert(input_names=input_names, output_names=output_names)
            if any(len(i.shape) in (2, 3) for i in model.inputs):
                warnings.warn(f"{root}: the sequence dimension stays fixed to the example's length ({e})",
                              stacklevel=2)
    if model is None:
        ep = export(module, example_inputs, dynamic_batch=dynamic_batch)
        model = Converter(ep, root_class=root).convert(input_names=input_names, output_names=output_names)
    torch = _torch()
    model.metadata.update({"source": "torch", "source_class": type(module).__qualname__,
                           "torch_version": str(torch.__version__), "layout": "NCHW"})
    return model


def load_state_dict(path) -> dict:
    """Reads a ``torch.save``-d state dict safely: ``{name: torch.Tensor}``.

    Only ``torch.load(path, weights_only=True, map_location="cpu")`` is used (no fallback to full
    pickle: a file that needs one is refused). Raises ``FileNotFoundError`` for a missing file and
    ``FormatError`` for a damaged file, a non-state-dict pickle, or anything that is not a mapping
    of str to tensors (e.g. a whole training checkpoint: pass its ``["state_dict"]`` part instead).
    """
    torch = _torch()
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise InputError(f"load_state_dict expects a file path, got {type(path).__name__}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such state-dict file: '{os.fsdecode(path)}'")
    if os.path.isdir(path):
        raise FormatError(f"'{os.fsdecode(path)}' is a directory, not a state-dict file")
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError (zip), EOFError, ...: all mean damaged/hostile
        first = (str(e).strip().splitlines() or [""])[0]
        raise FormatError(f"'{os.fsdecode(path)}' is not a loadable weights-only state dict "
                          f"({type(e).__name__}: {first[:300]})") from None
    from collections.abc import Mapping

    if not isinstance(obj, Mapping):
        raise FormatError(f"'{os.fsdecode(path)}' holds a {type(obj).__name__}, not a state dict (a mapping of "
                          "parameter names to tensors)")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise FormatError(f"state dict key {k!r} is a {type(k).__name__}, not a str")
        if not isinstance(v, torch.Tensor):
            hint = " (a checkpoint? pass its state dict part)" if isinstance(v, Mapping) else ""
            raise FormatError(f"state dict entry '{k}' is a {type(v).__name__}, not a tensor{hint}")
        out[k] = v
    return out


# ---------------------------------------------------------------- Hugging Face BERT
def _is_hf_bert(module):
    cls = type(module)
    return cls.__name__ == "BertModel" and cls.__module__.startswith("transformers.")


def _bert_wrapper_class():
    torch = _torch()

    class _BertForExport(torch.nn.Module):
        OUTPUT_NAMES = ("last_hidden_state", "pooler_output", "mean_pooled")

        def __init__(self, bert):
            super().__init__()
            self.bert = bert
            big_neg = torch.finfo(torch.float32).min
            # mask id (0 = padding, 1 = token) -> additive attention bias / token weight
            self.register_buffer("mask_bias", torch.tensor([[big_neg], [0.0]]), persistent=False)
            self.register_buffer("mask_weight", torch.tensor([[0.0], [1.0]]), persistent=False)
            self.train(bert.training)  # export restores the wrapper's mode: it must be the model's own

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            F = torch.nn.functional
            emb = self.bert.embeddings
            seq = input_ids.shape[1]
            h = emb.word_embeddings(input_ids) + emb.position_embeddings.weight[:seq]
            if token_type_ids is not None:
                h = h + emb.token_type_embeddings(token_type_ids)
            else:
                h = h + emb.token_type_embeddings.weight[0]
            h = emb.dropout(emb.LayerNorm(h))
            bias = F.embedding(attention_mask, self.mask_bias).squeeze(-1)[:, None, None, :]
            out = self.bert.encoder(h, attention_mask=bias)
            hs = out[0] if isinstance(out, (tuple, list)) else out.last_hidden_state
            w = F.embedding(attention_mask, self.mask_weight)
            mean = (hs * w).mean(dim=1) / w.mean(dim=1)
            if self.bert.pooler is not None:
                return hs, self.bert.pooler(hs), mean
            return hs, mean

    return _BertForExport


def BertForExport(bert):  # noqa: N802 - a class factory (torch is imported lazily)
    """Wraps a ``transformers.BertModel`` for import: ``forward(input_ids, attention_mask, token_type_ids=None)``
    returns ``(last_hidden_state, pooler_output, mean_pooled)`` (no pooler: the middle one is left out).
    See the module docstring."""
    return _bert_wrapper_class()(bert)


BertForExport.OUTPUT_NAMES = ("last_hidden_state", "pooler_output", "mean_pooled")


def cls_pool(last_hidden_state):
    """[B, S, D] -> [B, D]: the first ([CLS]) token's vector."""
    return np.asarray(last_hidden_state)[:, 0, :]


def masked_mean_pool(last_hidden_state, attention_mask):
    """[B, S, D], [B, S] (0/1) -> [B, D]: the mean over the tokens whose mask is 1."""
    h = np.asarray(last_hidden_state, dtype=np.float64)
    m = np.asarray(attention_mask, dtype=np.float64)[..., None]
    return ((h * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)).astype(np.float32)

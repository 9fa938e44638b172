"""Keras importer: ``from_keras(path)`` turns a ``.keras`` or legacy ``.h5`` model file into an IR ``Model``.

Keras is not imported and nothing in the file is executed: the config is parsed as JSON and
only layer classes of the allow-list in ``keras_layers.CONVERTERS`` (plus ``InputLayer``,
``Sequential`` and ``Functional`` models, inlined) are accepted; a ``Lambda`` layer, a custom
or unknown class is refused with ``UnsupportedError`` naming the layer and its class.

The converted model takes and returns channels-last tensors, like the Keras model. Its inputs
are named after the Keras input layers and keep the batch dimension dynamic; the other
dimensions come from the config (``input_shapes=`` overrides them, needed for models built
with ``None`` spatial sizes and "same" padding with strides).

Weights are matched by the file's own bookkeeping, never by guessed names: Keras 3 zips by the
per-class layer counter (checked against the layer name Keras also stores there), legacy files
by each layer group's ``weight_names`` (see ``keras_files``).
"""
from __future__ import annotations

import numpy as np

from ..errors import Error, FormatError, InputError, UnsupportedError
from ..ir import ACTIVATIONS as IR_ACTIVATIONS
from ..ir import Model
from . import keras_layers as KL
from .keras_files import KerasFile, LegacyScope

MAX_MODEL_DEPTH = 32  # nested Sequential/Functional models
MAX_LAYERS = 200_000  # layers in all (nested) models together
MAX_RANK = 8

MODEL_CLASSES = ("Functional", "Model", "Sequential")
_REFUSED_CODE = ("Lambda", "TFOpLambda", "SlicingOpLambda")

# legacy (tf.keras 2) var names of each slot, to order a layer's weight_names by name
_LEGACY_SLOT_NAMES = {"kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance", "depthwise_kernel",
                      "pointwise_kernel", "alpha", "embeddings", "mean", "variance", "count"}


def from_keras(path, *, input_shapes=None) -> Model:
    """Converts a Keras model file (``.keras`` zip or legacy full-model ``.h5``) to a slimrt ``Model``.

    ``input_shapes``: optional ``{input name: shape without the batch}`` (or one shape for a
    single-input model) fixing dimensions the file leaves open.
    Raises ``FormatError`` for damaged or non-model files and ``UnsupportedError`` for layers
    slimrt cannot run.
    """
    import os

    if not isinstance(path, (str, bytes, os.PathLike)):
        raise InputError(f"from_keras expects a file path, got {type(path).__name__}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such Keras model file: '{os.fspath(path)}'")
    with KerasFile(path) as kf:
        b = _Builder(kf)
        try:
            model = b.build(kf.config, input_shapes)
        except (Error, FileNotFoundError):
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
            # every field is type-checked where it is used; this is the safety net for what slipped through
            raise FormatError(f"malformed Keras model config: {type(e).__name__}: {e}") from None
    return model.validate()


class T:
    """A value of the graph being built: IR name, static shape (None = unknown), dtype."""

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, name, shape, dtype="float32"):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype

    def __repr__(self):
        return f"T({self.name}, {self.shape}, {self.dtype})"


class Layer:
    """One Keras layer of the config with checked getters for its fields."""

    def __init__(self, d, scope, prefix, uid):
        if not isinstance(d, dict):
            raise FormatError(f"a layer entry of the config is a {type(d).__name__}, not an object")
        self.d = d
        self.cls = d.get("class_name")
        if not isinstance(self.cls, str):
            raise FormatError("a layer of the config has no class_name")
        cfg = d.get("config")
        if not isinstance(cfg, dict):
            raise FormatError(f"layer of class '{self.cls}' has no config object")
        self.cfg = cfg
        name = d.get("name", cfg.get("name"))
        if not isinstance(name, str) or not name:
            raise FormatError(f"a layer of class '{self.cls}' has no name")
        self.short = name
        self.name = prefix + name  # unique display / IR name
        self.scope = scope
        self.uid = uid + "/" + name

    # ---- checked getters (a field of the wrong type is a FormatError naming the layer) ----
    def get(self, key, default=None):
        return self.cfg.get(key, default)

    def _bad(self, key, want):
        return FormatError(f"layer '{self.name}' ({self.cls}): config field '{key}' must be {want}, "
                           f"got {self.cfg.get(key)!r}")

    def int(self, key, default=None, minimum=None):
        v = self.cfg.get(key, default)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or (minimum is not None and v < minimum) or v >= 1 << 40:
            raise self._bad(key, "an integer" + (f" >= {minimum}" if minimum is not None else ""))
        return v

    def ints(self, key, n, minimum=None, default=None):
        v = self.cfg.get(key, default)
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v] * n
        if not isinstance(v, (list, tuple)) or len(v) != n:
            raise self._bad(key, f"{n} integers")
        out = []
        for e in v:
            if not isinstance(e, int) or isinstance(e, bool) or (minimum is not None and e < minimum) or e >= 1 << 40:
                raise self._bad(key, f"{n} integers")
            out.append(e)
        return tuple(out)

    def float(self, key, default=None):
        v = self.cfg.get(key, default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
            raise self._bad(key, "a finite number")
        return float(v)

    def floats_or_float(self, key, default):
        v = self.cfg.get(key, default)
        if v is None:
            v = default
        arr = np.asarray(v, dtype=object)
        if arr.ndim > MAX_RANK or arr.size > (1 << 24) or not all(
                isinstance(e, (int, float)) and not isinstance(e, bool) for e in arr.ravel()):
            raise self._bad(key, "a number or a list of numbers")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise self._bad(key, "finite")
        return arr

    def bool(self, key, default):
        v = self.cfg.get(key, default)
        if v is None:
            v = default
        if not isinstance(v, bool):
            raise self._bad(key, "true or false")
        return v

    def str(self, key, default=None):
        v = self.cfg.get(key, default)
        if not isinstance(v, str):
            raise self._bad(key, "a string")
        return v


class _Builder:
    def __init__(self, kf: KerasFile):
        self.kf = kf
        self.model = Model(metadata={"source": "keras", "keras_version": kf.keras_version, "format": kf.kind})
        try:
            self.keras_major = int(kf.keras_version.split(".")[0]) if kf.keras_version else 3
        except ValueError:
            self.keras_major = 3
        self._consts = {}  # (layer uid, slot) -> constant name: shared layers reuse their weights
        self._weights = {}  # layer uid -> {slot: array}
        self._layer_count = 0

    # ---- the model graph ----
    def build(self, cfg, input_shapes):
        if not isinstance(cfg, dict) or cfg.get("class_name") not in MODEL_CLASSES:
            cls = cfg.get("class_name") if isinstance(cfg, dict) else type(cfg).__name__
            raise FormatError(f"the file's config describes a '{cls}', not a Sequential or Functional model")
        self._check_class(cfg, "model")
        if isinstance(cfg.get("config"), dict) and isinstance(cfg["config"].get("name"), str):
            self.model.metadata["name"] = cfg["config"]["name"]
        self._input_shapes = input_shapes
        outs = self._model(cfg, self.kf.weights, "", None, "", 0)
        for o in outs:
            if not isinstance(o, T):
                raise FormatError("a model output is not a tensor")
            self.model.outputs.append(o.name)
        if input_shapes is not None and not isinstance(input_shapes, dict) and len(self.model.inputs) != 1:
            raise InputError("the model has several inputs: pass input_shapes as {name: shape}")
        if input_shapes is not None and isinstance(input_shapes, dict):
            unknown = set(input_shapes) - {i.name for i in self.model.inputs}
            if unknown:
                raise InputError(f"input_shapes names unknown input(s) {sorted(unknown)}")
        return self.model

    def _model(self, d, scope, prefix, inputs, uid, depth):
        if depth > MAX_MODEL_DEPTH:
            raise FormatError(f"models nested deeper than {MAX_MODEL_DEPTH} levels")
        conf = d.get("config")
        if not isinstance(conf, dict):
            raise FormatError(f"model '{prefix or '<top>'}' has no config object")
        layers = conf.get("layers")
        if not isinstance(layers, list):
            raise FormatError(f"model '{conf.get('name', prefix)}' has no layer list")
        self._layer_count += len(layers)
        if self._layer_count > MAX_LAYERS:
            raise FormatError(f"more than {MAX_LAYERS} layers")
        if d.get("class_name") == "Sequential":
            outs, names = self._sequential(conf, layers, scope, prefix, inputs, uid, depth)
        else:
            outs, names = self._functional(conf, layers, scope, prefix, inputs, uid, depth)
        if isinstance(scope, LegacyScope):
            extra = scope.unclaimed(names)
            if extra:
                raise FormatError(f"weights {extra[:3]} of model '{prefix or conf.get('name')}' belong to none of "
                                  "its layers")
        return outs

    def _scopes(self, scope, layer_objs):
        return scope.sub_scopes([(L_d.get("name", L_d.get("config", {}).get("name")), L_d.get("class_name"))
                                 for L_d in layer_objs])

    def _sequential(self, conf, layers, scope, prefix, inputs, uid, depth):
        layer_objs = []
        for ld in layers:
            if not isinstance(ld, dict) or not isinstance(ld.get("config"), dict):
                raise FormatError("a Sequential layer entry is not an object with a config")
            layer_objs.append(ld)
        names = [ld.get("name", ld["config"].get("name")) for ld in layer_objs]
        if len(set(names)) != len(names):
            raise FormatError(f"Sequential model '{conf.get('name')}' has duplicate layer names")
        scopes = self._scopes(scope, layer_objs)
        body = layer_objs
        in_name, shape, dtype = None, None, "float32"
        if layer_objs and layer_objs[0].get("class_name") == "InputLayer":
            self._check_class(layer_objs[0], "layer")
            in_name = names[0]
            shape, dtype = self._input_layer_shape(layer_objs[0]["config"], in_name)
            body = layer_objs[1:]
        elif inputs is None:
            if not layer_objs:
                raise FormatError(f"Sequential model '{conf.get('name')}' has no layers")
            first = layer_objs[0]["config"]
            bc = layer_objs[0].get("build_config")
            bshape = conf.get("build_input_shape") or first.get("batch_input_shape") or \
                (bc.get("input_shape") if isinstance(bc, dict) else None)
            if bshape is None:
                raise FormatError(f"Sequential model '{conf.get('name')}' was never built: its input shape is unknown")
            shape, dtype = self._input_layer_shape({"batch_shape": bshape, "dtype": first.get("dtype")},
                                                   f"{conf.get('name', 'sequential')}_input")
            in_name = f"{conf.get('name', 'sequential')}_input"
        if inputs is None:
            x = self._make_input(in_name, shape, dtype)
        else:
            if len(inputs) != 1:
                raise FormatError(f"Sequential model '{conf.get('name')}' called with {len(inputs)} inputs")
            x = inputs[0]
        for ld, nm in zip(body, names[len(layer_objs) - len(body):]):
            outs = self._call(ld, [x], scopes[nm], prefix, uid, depth, {})
            if len(outs) != 1:
                raise FormatError(f"layer '{prefix}{nm}' in a Sequential model has {len(outs)} outputs")
            x = outs[0]
        return [x], names

    def _functional(self, conf, layers, scope, prefix, inputs, uid, depth):
        by_name = {}
        for ld in layers:
            if not isinstance(ld, dict):
                raise FormatError("a layer entry of the config is not an object")
            nm = ld.get("name", (ld.get("config") or {}).get("name") if isinstance(ld.get("config"), dict) else None)
            if not isinstance(nm, str):
                raise FormatError("a layer of the config has no name")
            if nm in by_name:
                raise FormatError(f"duplicate layer name '{nm}'")
            by_name[nm] = ld
        names = list(by_name)
        scopes = self._scopes(scope, layers)
        in_refs = _flatten_refs(conf.get("input_layers"), "input_layers")
        out_refs = _flatten_refs(conf.get("output_layers"), "output_layers")
        if not out_refs:
            raise FormatError(f"model '{conf.get('name')}' has no outputs")
        legacy = any(isinstance(n, list) for ld in layers for n in (ld.get("inbound_nodes") or []))

        produced = {}
        # graph inputs
        if inputs is not None and len(inputs) != len(in_refs):
            raise FormatError(f"model '{conf.get('name')}' takes {len(in_refs)} inputs, called with {len(inputs)}")
        for i, (nm, _ni, _ti) in enumerate(in_refs):
            ld = by_name.get(nm)
            if ld is None or ld.get("class_name") != "InputLayer":
                raise FormatError(f"model input '{nm}' is not an InputLayer of the model")
            self._check_class(ld, "layer")
            if inputs is None:
                shape, dtype = self._input_layer_shape(ld.get("config") or {}, nm)
                produced[(nm, 0)] = [self._make_input(nm, shape, dtype)]
            else:
                produced[(nm, 0)] = [inputs[i]]

        # layer calls, processed when their inputs exist (shared layers may be called out of order)
        pending = []
        for ld in layers:
            nm = ld.get("name", ld["config"].get("name"))
            if ld.get("class_name") == "InputLayer":
                continue
            nodes = ld.get("inbound_nodes") or []
            if not isinstance(nodes, list):
                raise FormatError(f"layer '{nm}': inbound_nodes is not a list")
            for k, nd in enumerate(nodes):
                pending.append((nm, k, nd))
        while pending:
            left = []
            for nm, k, nd in pending:
                refs, kwargs = _parse_node(nd, nm, (by_name.get(nm) or {}).get("class_name") in KL.MULTI_ARG_CLASSES)
                xs = []
                for rn, ri, rt in refs:
                    key = (rn, ri + self._node_offset(by_name.get(rn), legacy, in_args=True))
                    if key not in produced:
                        if rn not in by_name:
                            raise FormatError(f"layer '{nm}' reads unknown layer '{rn}'")
                        xs = None
                        break
                    outs = produced[key]
                    if not 0 <= rt < len(outs):
                        raise FormatError(f"layer '{nm}' reads output {rt} of '{rn}', which has {len(outs)}")
                    xs.append(outs[rt])
                if xs is None:
                    left.append((nm, k, nd))
                    continue
                produced[(nm, k)] = self._call(by_name[nm], xs, scopes[nm], prefix, uid, depth, kwargs)
            if len(left) == len(pending):
                raise FormatError(f"the layer graph has a cycle or reads missing calls: {[p[0] for p in left[:5]]}")
            pending = left

        outs = []
        for nm, ni, ti in out_refs:
            key = (nm, ni + self._node_offset(by_name.get(nm), legacy, in_args=False))
            if key not in produced or not 0 <= ti < len(produced[key]):
                raise FormatError(f"model output [{nm}, {ni}, {ti}] is never computed")
            outs.append(produced[key][ti])
        return outs, names

    def _node_offset(self, ld, legacy, in_args):
        """Keras numbers a nested Functional model's calls from 1 in some places (its own call is node 0)."""
        if ld is None or ld.get("class_name") not in MODEL_CLASSES:
            return 0
        if legacy:  # tf.keras 2: a nested model that starts from an input counts that node everywhere
            if ld.get("class_name") != "Sequential":
                return -1
            first = ((ld.get("config") or {}).get("layers") or [None])[0]
            has_input = isinstance(first, dict) and (first.get("class_name") == "InputLayer" or isinstance(
                first.get("config"), dict) and first["config"].get("batch_input_shape") is not None)
            return -1 if has_input else 0
        if not in_args and ld.get("class_name") in ("Functional", "Model"):
            return -1  # Keras 3: only input_layers/output_layers count it
        return 0

    def _input_layer_shape(self, cfg, name):
        shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
        if shape is None and isinstance(cfg.get("shape"), list):
            shape = [None] + cfg["shape"]
        if not isinstance(shape, list) or not 1 <= len(shape) <= MAX_RANK or not all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and 0 <= d < (1 << 40)) for d in shape):
            raise FormatError(f"input '{name}' has no valid shape in the config ({shape!r})")
        shape = [None] + list(shape[1:])
        override = self._input_shapes
        if override is not None:
            if not isinstance(override, dict):
                override = {name: override} if not self.model.inputs else {}
            if name in override:
                o = list(override[name])
                if len(o) != len(shape) - 1 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in o):
                    raise InputError(f"input_shapes['{name}'] = {override[name]!r} does not fit the input's "
                                     f"rank {len(shape) - 1}")
                for d0, d1 in zip(shape[1:], o):
                    if d0 is not None and d0 != d1:
                        raise InputError(f"input_shapes['{name}']: {tuple(o)} contradicts the model's {shape[1:]}")
                shape = [None] + [int(d) for d in o]
        dt = cfg.get("dtype", "float32")
        if isinstance(dt, dict):
            dt = (dt.get("config") or {}).get("name", "float32")
        if not isinstance(dt, str):
            dt = "float32"
        try:
            kind = np.dtype(dt).kind
        except TypeError:
            kind = "f" if "float" in dt else "?"
        if kind == "f":
            dt = "float32"
        elif kind in "iu" and dt in ("int32", "int64"):
            pass
        elif kind in "iu":
            dt = "int32" if np.dtype(dt).itemsize <= 4 else "int64"
        else:
            raise UnsupportedError(f"input '{name}' has dtype '{dt}', which slimrt cannot feed")
        return tuple(shape), dt

    def _make_input(self, name, shape, dtype):
        if name in {i.name for i in self.model.inputs}:
            raise FormatError(f"two model inputs are named '{name}'")
        self.model.add_input(name, shape, dtype)
        return T(name, shape, dtype)

    def _check_class(self, d, what):
        cls = d.get("class_name")
        name = d.get("name")
        if name is None and isinstance(d.get("config"), dict):
            name = d["config"].get("name")
        if not isinstance(cls, str):
            raise FormatError(f"{what} '{name}' has no class_name")
        module = d.get("module")
        reg = d.get("registered_name")
        if module is not None and not isinstance(module, str):
            raise FormatError(f"{what} '{name}': module is not a string")
        if isinstance(module, str) and module.startswith(("keras.src.ops", "keras.ops")):
            raise UnsupportedError(f"'{name}' is the Keras operation '{cls}' ({module}), not a layer; slimrt "
                                   "imports layers only")
        builtin_modules = ("keras", "keras.models", "keras.layers") if cls in MODEL_CLASSES else ("keras.layers",)
        custom = (module is not None and not (module in builtin_modules or module.startswith(
            ("keras.src.layers.", "keras.layers.") if cls not in MODEL_CLASSES else ("keras.src.models.",)))) \
            or (reg is not None and reg != cls)
        if cls in _REFUSED_CODE:
            raise UnsupportedError(f"layer '{name}' is a {cls} layer: it holds Python code, which slimrt never "
                                   "runs; rewrite it with built-in layers")
        known = cls in KL.CONVERTERS or cls in MODEL_CLASSES or cls == "InputLayer"
        if custom or not known:
            where = f" (module '{module}', registered as '{reg}')" if custom else ""
            raise UnsupportedError(f"layer '{name}' of class '{cls}'{where} is not supported by the slimrt Keras "
                                   "importer (custom or unknown layer class)")

    def _call(self, ld, xs, scope, prefix, uid, depth, kwargs):
        self._check_class(ld, "layer")
        cls = ld["class_name"]
        L = Layer(ld, scope, prefix, uid)
        if kwargs.get("training") is True and cls in KL.NOOP_CLASSES:
            raise UnsupportedError(f"layer '{L.name}' ({cls}) is called with training=True: random at inference")
        for x in xs:
            if len(x.shape) > MAX_RANK:
                raise UnsupportedError(f"layer '{L.name}': tensors of rank {len(x.shape)}")
        if cls in MODEL_CLASSES:
            return self._model(ld, scope, L.name + "/", xs, L.uid, depth + 1)
        if cls == "InputLayer":
            raise FormatError(f"InputLayer '{L.name}' is called like a layer")
        if cls not in KL.NOOP_CLASSES and cls not in ("Embedding",):
            for x in xs:
                if x.dtype != "float32":
                    raise UnsupportedError(f"layer '{L.name}' ({cls}) reads an {x.dtype} tensor")
        outs = KL.CONVERTERS[cls](self, L, xs)
        return outs

    # ---- weights and constants ----
    def weights(self, L, slots, sub=None):
        """{slot: float32 array} for the layer's stored variables, in the order ``slots`` lists them.
        sub: names of the sublayer that holds them (MultiHeadAttention's projections: "query_dense" in Keras 3
        files, "query" in legacy ones), the first one the file has."""
        key = L.uid if sub is None else (L.uid, sub[0])
        if key in self._weights:
            return self._weights[key]
        scope = L.scope
        if sub is not None:
            for name in sub:
                scope = L.scope.child(name)
                if scope.vars():
                    break
        vars_ = scope.vars()
        what_of = f"layer '{L.name}' ({L.cls})" + (f" sublayer '{sub[0]}'" if sub else "")
        if len(vars_) != len(slots):
            what = "missing weights" if len(vars_) < len(slots) else "unexpected extra weights"
            raise FormatError(f"{what_of}: the file stores {len(vars_)} variables, the config needs "
                              f"{len(slots)} ({', '.join(s for s, _ in slots)}): {what}")
        stored = L.scope.stored_name() if sub is None else None
        if stored is not None and stored != L.short:
            raise FormatError(f"layer '{L.name}' ({L.cls}): its weights slot in the file belongs to layer '{stored}' "
                              "(config and weights do not match)")
        if any(v.name is not None for v in vars_):
            vars_ = _order_by_name(vars_, [s for s, _ in slots])
        out = {}
        for (slot, shape), v in zip(slots, vars_):
            out[slot] = v.read(shape, f"{what_of} weight '{slot}'")
        self._weights[key] = out
        return out

    def check_plain_weights(self, L):
        dt = L.get("dtype")
        name = dt.get("config", {}).get("name") if isinstance(dt, dict) and isinstance(dt.get("config"), dict) else dt
        cls = dt.get("class_name") if isinstance(dt, dict) else None
        if (cls not in (None, "DTypePolicy", "Policy") or (isinstance(name, str) and not (
                name in ("float16", "float32", "float64", "bfloat16") or name.startswith("mixed_")))):
            raise UnsupportedError(f"layer '{L.name}' ({L.cls}): dtype policy {cls or name} (quantized layers) is not "
                                   "supported")
        if L.get("quantization_config") is not None or L.get("lora_rank") not in (None, 0):
            raise UnsupportedError(f"layer '{L.name}' ({L.cls}): quantized / LoRA layers are not supported")

    def const(self, L, slot, arr):
        key = (L.uid, slot)
        if key not in self._consts:
            self._consts[key] = self.model.add_constant(f"{L.name}/{slot}", np.ascontiguousarray(arr, np.float32))
        return self._consts[key]

    # ---- nodes ----
    def node(self, op, inputs, attrs, L, shape, final=False, tag=None, dtype="float32"):
        name = L.name if final else f"{L.name}/{tag or op}"
        out = self.model.add_node(op, inputs, attrs, name=name)
        return T(out, shape, dtype)

    def act_steps(self, value, L):
        if value is None:
            return []
        if isinstance(value, dict):
            mod = value.get("module", "keras.activations")
            if value.get("class_name") == "function" and isinstance(value.get("config"), str) and \
                    isinstance(mod, str) and (mod == "keras" or mod.startswith("keras.")) and \
                    value.get("registered_name") in (None, "function"):
                value = value["config"]
            else:
                raise UnsupportedError(f"layer '{L.name}' ({L.cls}): activation object "
                                       f"'{value.get('class_name')}' is not supported (only built-in activations)")
        if not isinstance(value, str):
            raise FormatError(f"layer '{L.name}' ({L.cls}): activation {value!r} is not a name")
        if value not in KL.ACTIVATIONS:
            raise UnsupportedError(f"layer '{L.name}' ({L.cls}): activation '{value}' is not supported")
        steps = KL.ACTIVATIONS[value]
        return KL.hard_sigmoid_steps(self.keras_major) if steps is None else steps

    @staticmethod
    def fusable(steps):
        if len(steps) == 1 and steps[0][0] == "act" and steps[0][1] in IR_ACTIVATIONS:
            a = {"act": steps[0][1]}
            if steps[0][1] in ("leaky_relu", "elu"):
                a["alpha"] = float(steps[0][2])
            return a
        return None

    def op_with_act(self, op, inputs, attrs, L, shape, act_value):
        """A dense/conv node with the layer's activation fused when the IR has it, else separate nodes."""
        steps = self.act_steps(act_value, L)
        fused = self.fusable(steps)
        if fused is not None:
            return self.node(op, inputs, dict(attrs, **fused), L, shape, final=True)
        y = self.node(op, inputs, attrs, L, shape, final=not steps)
        return self.apply_steps(y, steps, L)

    def apply_steps(self, x, steps, L):
        if not steps:
            return x
        for i, st in enumerate(steps):
            final = i == len(steps) - 1
            if st[0] == "act":
                attrs = {"act": st[1]}
                if st[1] in ("leaky_relu", "elu"):
                    attrs["alpha"] = float(st[2])
                x = self.node("activation", [x.name], attrs, L, x.shape, final=final, tag=st[1])
            elif st[0] == "softmax":
                x = self.node("softmax", [x.name], {"axis": KL.norm_axis(L, st[1], len(x.shape))}, L, x.shape,
                              final=final)
            elif st[0] == "mul":
                k = self.model.add_constant(f"{L.name}/scale", np.array([st[1]], np.float32))
                x = self.node("mul", [x.name, k], {}, L, x.shape, final=final, tag="scale")
            else:  # pragma: no cover - the step tables above are closed
                raise AssertionError(st)
        return x


def _order_by_name(vars_, slot_names):
    """Legacy files name each weight: order them as the slots are when every name is a known slot name."""
    names = [v.name.split("/")[-1].split(":")[0] for v in vars_]
    if sorted(names) == sorted(slot_names) and len(set(names)) == len(names):
        by = dict(zip(names, vars_))
        return [by[s] for s in slot_names]
    known = [n for n in names if n in _LEGACY_SLOT_NAMES]
    if len(set(known)) == len(known) == len(names):
        raise FormatError(f"stored weights {names} do not match the expected {slot_names}")
    return vars_


def _is_ref(v):
    return (isinstance(v, list) and len(v) in (3, 4) and isinstance(v[0], str)
            and all(isinstance(e, int) and not isinstance(e, bool) and 0 <= e < (1 << 31) for e in v[1:3]))


def _flatten_refs(v, what):
    """input_layers / output_layers: a [name, node, tensor] leaf, or lists / dicts of them."""
    out = []
    stack = [v]
    while stack:
        o = stack.pop()
        if _is_ref(o):
            out.append((o[0], o[1], o[2]))
        elif isinstance(o, list):
            stack.extend(reversed(o))
        elif isinstance(o, dict):
            stack.extend(reversed(list(o.values())))
        else:
            raise FormatError(f"{what}: unexpected entry {o!r}")
        if len(out) > MAX_LAYERS:
            raise FormatError(f"{what}: too many entries")
    return out


def _parse_node(nd, layer_name, multi=False):
    """One inbound node -> ([(layer, node, tensor)], kwargs) for Keras 3 dicts and tf.keras 2 lists.
    multi: the layer takes several positional tensors (MultiHeadAttention's query, value, key)."""
    if isinstance(nd, list):  # tf.keras 2: [[name, node, tensor, kwargs], ...]
        refs, kwargs = [], {}
        for e in nd:
            if not _is_ref(e):
                raise FormatError(f"layer '{layer_name}': malformed inbound node entry {e!r}")
            refs.append((e[0], e[1], e[2]))
            if len(e) == 4 and isinstance(e[3], dict):
                kwargs.update(e[3])
        return refs, _check_kwargs(kwargs, layer_name, multi)
    if not isinstance(nd, dict) or not isinstance(nd.get("args", []), list):
        raise FormatError(f"layer '{layer_name}': malformed inbound node")
    args = nd.get("args", [])
    kwargs = nd.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise FormatError(f"layer '{layer_name}': malformed call kwargs")
    refs = []
    if args:
        first, rest = (args, []) if multi else (args[0], args[1:])
        if any(_has_tensor(r) for r in rest) or any(r is not None for r in rest):
            raise UnsupportedError(f"layer '{layer_name}' is called with extra positional arguments")
        stack = [first]
        while stack:
            o = stack.pop()
            if isinstance(o, dict) and o.get("class_name") == "__keras_tensor__":
                h = (o.get("config") or {}).get("keras_history")
                if not _is_ref(h):
                    raise FormatError(f"layer '{layer_name}': malformed keras_history {h!r}")
                refs.append((h[0], h[1], h[2]))
            elif isinstance(o, list):
                stack.extend(reversed(o))
            elif isinstance(o, dict) and o.get("class_name") in ("__tuple__",) and isinstance(o.get("config"), dict):
                stack.extend(reversed(list((o["config"].get("value") or []))))
            elif isinstance(o, dict):
                stack.extend(reversed(list(o.values())))
            elif o is not None:
                raise UnsupportedError(f"layer '{layer_name}' is called with a non-tensor argument {o!r}")
    if any(_has_tensor(v) for v in kwargs.values()):
        raise UnsupportedError(f"layer '{layer_name}' is called with tensors as keyword arguments "
                               f"({sorted(kwargs)})")
    return refs, _check_kwargs(kwargs, layer_name, multi)


def _has_tensor(o):
    stack = [o]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if v.get("class_name") == "__keras_tensor__":
                return True
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


# MultiHeadAttention call arguments that are harmless at their defaults
_MHA_DEFAULT_KWARGS = {"query_mask": None, "value_mask": None, "key_mask": None, "attention_mask": None,
                       "return_attention_scores": False, "use_causal_mask": False}


def _check_kwargs(kwargs, layer_name, multi=False):
    for k, v in kwargs.items():
        if k == "mask" and v is None:
            continue
        if k == "training" and v in (None, False, True):
            continue
        if multi and k in _MHA_DEFAULT_KWARGS and v == _MHA_DEFAULT_KWARGS[k]:
            continue
        raise UnsupportedError(f"layer '{layer_name}' is called with keyword argument {k}={v!r}")
    return kwargs

"""A compression recipe: what ``compress`` does, as a JSON-able dict.

::

    {"prune": 0.8, "prune_mode": "magnitude" | "global" | "n:m", "n_m": [2, 4],
     "share": 16, "share_mode": "per_tensor" | "per_channel", "share_init": "kmeans++" | "linear",
     "quant": null | "int8" | "log2", "log2_bits": 4,
     "calib": "minmax" | "percentile" | "entropy", "percentile": 99.99, "calib_batch": 32,
     "kmeans_iters": 100, "kmeans_tol": 1e-6, "optimize": true, "seed": 0,
     "csr_index": "auto" | "absolute",
     "per_layer": {"<node or weight name>": {"prune": 0.5, "share": null, "quant": "int8", "skip": false, ...}}}

Per-layer overrides take the *layer* keys (``LAYER_KEYS``); a layer named with its
own ``prune`` value is pruned to that sparsity by magnitude (or N:M if its mode
says so) and leaves the global pool of ``prune_mode: "global"``; ``"skip": true``
keeps the layer's weight dense fp32. ``csr_index``: how a pruned (CSR) weight stores its
column indices in the file: ``"auto"`` picks relative codes of the width (1..8 bits) that
takes the fewest bytes, when that beats absolute uint16/int32 (the loader decodes them once);
``"absolute"`` keeps uint16/int32.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields

from ..errors import CompressionError

PRUNE_MODES = ("magnitude", "global", "n:m")
SHARE_MODES = ("per_tensor", "per_channel")
SHARE_INITS = ("kmeans++", "linear")
QUANTS = (None, "int8", "log2")
CALIB_METHODS = ("minmax", "percentile", "entropy")
CSR_INDEX = ("auto", "absolute")

# keys a per_layer entry may override
LAYER_KEYS = ("prune", "prune_mode", "n_m", "share", "share_mode", "share_init", "quant", "log2_bits", "skip")


@dataclass
class LayerPlan:
    """The effective settings for one weight tensor."""

    prune: float | None = None
    prune_mode: str = "magnitude"
    n_m: tuple = (2, 4)
    share: int | None = None
    share_mode: str = "per_tensor"
    share_init: str = "kmeans++"
    quant: str | None = None
    log2_bits: int = 4
    skip: bool = False
    own_prune: bool = False  # the layer's prune value came from per_layer (so it is not in the global pool)

    @property
    def prunes(self) -> bool:
        return not self.skip and (self.prune_mode == "n:m" or bool(self.prune))

    @property
    def does_anything(self) -> bool:
        return not self.skip and (self.prunes or self.share is not None or self.quant is not None)


@dataclass
class Recipe:
    prune: float | None = None
    prune_mode: str = "magnitude"
    n_m: list = field(default_factory=lambda: [2, 4])
    share: int | None = None
    share_mode: str = "per_tensor"
    share_init: str = "kmeans++"
    quant: str | None = None
    log2_bits: int = 4
    calib: str = "minmax"
    percentile: float = 99.99
    calib_batch: int = 32
    kmeans_iters: int = 100
    kmeans_tol: float = 1e-6
    optimize: bool = True
    seed: int = 0
    csr_index: str = "auto"
    attention: str = "fp32"
    per_layer: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- (de)serialisation
    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        if not isinstance(d, dict):
            raise CompressionError(f"a recipe is a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CompressionError(f"unknown recipe key(s) {unknown}; known: {sorted(known)}")
        r = cls(**{k: v for k, v in d.items()})
        return r.validate()

    @classmethod
    def from_json(cls, src) -> "Recipe":
        """From a JSON string, a path to a ``.json`` file, a dict or a Recipe."""
        if isinstance(src, Recipe):
            return cls.from_dict(src.to_dict())
        if isinstance(src, dict):
            return cls.from_dict(src)
        if isinstance(src, os.PathLike) or (isinstance(src, str) and not src.lstrip().startswith("{")):
            path = os.fspath(src)
            if not os.path.exists(path):
                raise CompressionError(f"recipe file '{path}' does not exist (or pass the JSON text itself)")
            with open(path, encoding="utf-8") as f:
                text = f.read()
        else:
            text = src
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise CompressionError(f"recipe is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["n_m"] = list(d["n_m"])
        d["per_layer"] = {k: dict(v) if isinstance(v, dict) else v for k, v in self.per_layer.items()}
        return d

    def to_json(self, indent=2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    # ---------------------------------------------------------------- checks
    def validate(self) -> "Recipe":
        _check_layer_values("recipe", {k: getattr(self, k) for k in LAYER_KEYS if k != "skip"})
        if self.calib not in CALIB_METHODS:
            raise CompressionError(f"calib method must be one of {list(CALIB_METHODS)}, got {self.calib!r}")
        if not _is_num(self.percentile) or not 50.0 < float(self.percentile) <= 100.0:
            raise CompressionError(f"percentile must be in (50, 100], got {self.percentile!r}")
        if not _is_int(self.calib_batch) or self.calib_batch < 1:
            raise CompressionError(f"calib_batch must be a positive integer, got {self.calib_batch!r}")
        if not _is_int(self.kmeans_iters) or self.kmeans_iters < 1:
            raise CompressionError(f"kmeans_iters must be a positive integer, got {self.kmeans_iters!r}")
        if not _is_num(self.kmeans_tol) or self.kmeans_tol < 0:
            raise CompressionError(f"kmeans_tol must be >= 0, got {self.kmeans_tol!r}")
        if not _is_int(self.seed):
            raise CompressionError(f"seed must be an integer, got {self.seed!r}")
        if self.csr_index not in CSR_INDEX:
            raise CompressionError(f"csr_index must be one of {list(CSR_INDEX)}, got {self.csr_index!r}")
        if self.attention not in ("fp32", "int8"):
            raise CompressionError(f"attention must be 'fp32' or 'int8', got {self.attention!r}")
        if not isinstance(self.optimize, bool):
            raise CompressionError(f"optimize must be true or false, got {self.optimize!r}")
        if not isinstance(self.per_layer, dict):
            raise CompressionError("per_layer must map layer or weight names to override objects")
        for name, ov in self.per_layer.items():
            if ov is None:
                continue
            if not isinstance(ov, dict):
                raise CompressionError(f"per_layer['{name}'] must be an object of overrides (or null to skip)")
            bad = sorted(set(ov) - set(LAYER_KEYS))
            if bad:
                raise CompressionError(f"per_layer['{name}']: unknown key(s) {bad}; a layer may override "
                                       f"{list(LAYER_KEYS)}")
            if "skip" in ov and not isinstance(ov["skip"], bool):
                raise CompressionError(f"per_layer['{name}']: skip must be true or false")
            _check_layer_values(f"per_layer['{name}']", ov)
        self.n_m = [int(v) for v in self.n_m]
        return self

    # ---------------------------------------------------------------- per-layer plans
    def plan(self, names) -> LayerPlan:
        """The plan of a weight known by ``names`` (node names and the weight's constant name)."""
        base = LayerPlan(prune=self.prune, prune_mode=self.prune_mode, n_m=tuple(self.n_m), share=self.share,
                         share_mode=self.share_mode, share_init=self.share_init, quant=self.quant,
                         log2_bits=self.log2_bits)
        for n in names:
            if n not in self.per_layer:
                continue
            ov = self.per_layer[n]
            if ov is None:
                base.skip = True
                continue
            for k, v in ov.items():
                if k == "n_m":
                    v = tuple(int(e) for e in v)
                setattr(base, k, v)
            if "prune" in ov:
                base.own_prune = True
                if base.prune_mode == "global":
                    base.prune_mode = "magnitude"
        if base.prune_mode == "n:m":
            n, m = base.n_m
            if base.prune is not None and base.prune != 0 and not math.isclose(base.prune, 1 - n / m, abs_tol=1e-9):
                raise CompressionError(f"prune={base.prune} conflicts with {n}:{m} pruning (sparsity {1 - n / m:g}); "
                                       f"leave prune unset with prune_mode 'n:m'")
        if base.quant == "log2" and base.share is not None:
            raise CompressionError("quant='log2' and share cannot be combined: log2 codes already share "
                                   f"2**{base.log2_bits - 1} - 1 magnitudes per channel; use share with quant=None or "
                                   "'int8'")
        return base


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_layer_values(where, d):
    if "prune" in d and d["prune"] is not None:
        p = d["prune"]
        if not _is_num(p) or not 0.0 <= float(p) < 1.0:
            raise CompressionError(f"{where}: sparsity (prune) must be in [0, 1), got {p!r}")
    if "prune_mode" in d and d["prune_mode"] not in PRUNE_MODES:
        raise CompressionError(f"{where}: prune_mode must be one of {list(PRUNE_MODES)}, got {d['prune_mode']!r}")
    if "n_m" in d:
        nm = d["n_m"]
        if (not isinstance(nm, (list, tuple)) or len(nm) != 2 or not all(_is_int(e) for e in nm)
                or not 1 <= nm[0] < nm[1]):
            raise CompressionError(f"{where}: n_m must be [N, M] with 1 <= N < M (e.g. [2, 4]), got {nm!r}")
    if "share" in d and d["share"] is not None:
        k = d["share"]
        if not _is_int(k) or not 2 <= k <= 256:
            raise CompressionError(f"{where}: share (number of centroids) must be an integer in 2..256, got {k!r}")
    if "share_mode" in d and d["share_mode"] not in SHARE_MODES:
        raise CompressionError(f"{where}: share_mode must be one of {list(SHARE_MODES)}, got {d['share_mode']!r}")
    if "share_init" in d and d["share_init"] not in SHARE_INITS:
        raise CompressionError(f"{where}: share_init must be one of {list(SHARE_INITS)}, got {d['share_init']!r}")
    if "quant" in d and d["quant"] not in QUANTS:
        raise CompressionError(f"{where}: quant must be null, 'int8' or 'log2', got {d['quant']!r}")
    if "log2_bits" in d:
        b = d["log2_bits"]
        if not _is_int(b) or not 2 <= b <= 8:
            raise CompressionError(f"{where}: log2_bits must be an integer in 2..8, got {b!r}")

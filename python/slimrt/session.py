"""``slimrt.Session``: runs a model on the native runtime."""
from __future__ import annotations

import os

import numpy as np

from ._native import core as _core
from .errors import InputError
from .ir import Model


class Session:
    """Runs a ``.slim`` file or a ``Model`` on the C++ runtime.

    ``threads``: worker threads for this session (default: ``SLIMRT_NUM_THREADS``
    or every CPU the process may use). ``isa``: cap the kernels to one ISA
    (``"scalar"``, ``"avx2"``, ``"avx512"``, ``"avx512vnni"``); default the best
    this CPU supports (itself capped by the ``SLIMRT_ISA`` environment variable).

    ``tune=True``: when a plan is made for new input shapes, time each compressed layer's native
    kernel against its fp32 decoding on those shapes and keep the faster one, so compression never
    makes a layer slower (the fp32 variant is packed only when tuning). Choices stored in the file
    by ``slimrt tune`` for this CPU signature are reused without timing, tune or not.

    ``fuse=False``: run every node on its own kernel. By default a depthwise convolution and the
    pointwise (1x1) convolution that alone reads its output (fp32, or static int8) run as one op, a
    few output rows at a time, so the depthwise result stays in the cache instead of going out to
    memory and back (only where that result is bigger than a core's L2 cache; the file keeps both
    nodes; the outputs are the same bytes for int8, the same within float rounding for fp32).

    ``run`` releases the GIL; one session may be used from several threads at once.
    """

    def __init__(self, model, threads: int | None = None, isa: str | None = None,
                 latency_target_ms: float | None = None, percentile: float = 95.0, min_width: float | None = None,
                 tune: bool = False, fuse: bool = True):
        t = 0 if threads is None else int(threads)
        if t < 0:
            raise InputError("threads must be >= 0")
        kw = dict(latency_target_ms=float(latency_target_ms or 0.0), percentile=float(percentile),
                  min_width=float(min_width or 0.0), tune=bool(tune), fuse=bool(fuse))
        if isinstance(model, Model):
            from .slimfile import dumps

            self._s = _core.Session.from_bytes(dumps(model), t, isa, **kw)
        elif isinstance(model, (bytes, bytearray, memoryview)):
            self._s = _core.Session.from_bytes(bytes(model), t, isa, **kw)
        else:
            self._s = _core.Session(os.fspath(model), t, isa, **kw)
        self.inputs = [dict(name=n, shape=s, dtype=d) for n, s, d in self._s.inputs]
        # The outputs a run returns (for a slimmable model: the widest width's; see run(width=)).
        self.outputs = [dict(name=n, dtype=d) for n, _, d in self._s.width_outputs(0.0)]

    @property
    def input_names(self):
        return [i["name"] for i in self.inputs]

    @property
    def output_names(self):
        return [o["name"] for o in self.outputs]

    @property
    def isa(self) -> str:
        return self._s.isa

    @property
    def threads(self) -> int:
        return self._s.threads

    def _feeds(self, feeds):
        names = self.input_names
        if isinstance(feeds, dict):
            missing = [n for n in names if n not in feeds]
            extra = sorted(set(feeds) - set(names))
            if missing:
                raise InputError(f"missing input(s) {missing}; the model takes {names}")
            if extra:
                raise InputError(f"unknown input(s) {extra}; the model takes {names}")
            return [feeds[n] for n in names]
        if isinstance(feeds, (list, tuple)):
            if len(feeds) != len(names):
                raise InputError(f"the model takes {len(names)} inputs {names}, got {len(feeds)}")
            return list(feeds)
        if len(names) != 1:
            raise InputError(f"the model takes {len(names)} inputs {names}; pass a dict or a list")
        return [feeds]

    def run(self, feeds, threads: int | None = None, width: float | None = None) -> list:
        """Runs the model. ``feeds``: one array, a list in input order, or ``{name: array}``.

        Returns the list of output arrays (numpy), in the model's output order. For a slimmable
        model (``slimrt.slimmable.slim``) ``width`` forces a width; otherwise the latency-target
        scheduler picks one (``latency_target_ms``), or the widest runs. ``session.width`` tells
        which width the last run used. ``threads`` runs this call on fewer threads than the
        session's (more are capped at the session's count: workspaces are planned for it).
        """
        arrays = self._arrays(feeds, width)
        return self._s.run(arrays, 0 if threads is None else int(threads), float(width or 0.0))

    def _arrays(self, feeds, width):
        arrays = [a if isinstance(a, np.ndarray) else np.asarray(a) for a in self._feeds(feeds)]
        if width is not None and not 0 < width <= 1:
            raise InputError(f"width must be in (0, 1], got {width}")
        return arrays

    def profile(self, feeds, runs: int = 20, warmup: int = 2, threads: int | None = None,
                width: float | None = None) -> dict:
        """Times every node over ``runs`` runs (after ``warmup`` untimed ones) on these inputs.

        Returns ``{"ms": mean wall ms per run, "rows": [...]}``; each row is a dict with
        ``node``, ``op``, ``kernel`` (what the plan runs), ``ms`` (mean per run) and ``pct`` (of the
        summed node time), slowest first. Nodes that only re-label bytes (views) are left out. The
        latency-target scheduler does not see profiled runs.
        """
        if int(runs) < 1:
            raise InputError(f"runs must be >= 1, got {runs}")
        arrays = self._arrays(feeds, width)
        t = 0 if threads is None else int(threads)
        w = float(width or 0.0)
        if warmup > 0:
            self._s.profile(arrays, int(warmup), t, w)
        rows, total = self._s.profile(arrays, int(runs), t, w)
        node_sum = sum(r[3] for r in rows) or 1.0
        out = [{"node": n, "op": op, "kernel": k, "ms": ms, "pct": 100.0 * ms / node_sum}
               for n, op, k, ms in rows]
        out.sort(key=lambda r: -r["ms"])
        return {"ms": total, "rows": out}

    @property
    def widths(self) -> list:
        """Width multipliers of a slimmable model, widest first ([] otherwise)."""
        return list(self._s.widths)

    @property
    def width(self):
        """The width the last run used (None before the first run or for a plain model)."""
        return self._s.last_width

    def stats(self) -> dict:
        """Scheduler statistics: per width runs, misses, latency p50/p95 and EWMA; switches ({} without one)."""
        return self._s.scheduler_stats()

    def kernels(self, *shapes):
        """(node name, op, kernel) per node: what the dispatcher picked. With input shapes, the
        kernels the plan for those shapes runs (with ``tune=True``: the variants the tuner chose)."""
        if shapes:
            return self._s.plan_kernels([list(s) for s in shapes])
        return self._s.kernel_names()

    @property
    def tuning_signature(self) -> str:
        """The CPU signature tuning records are stored under (vendor / brand / ISA / threads)."""
        return self._s.tuning_signature

    def tuning(self) -> dict:
        """Kernel choices of the plans made so far, ``"<node>|<input shapes>" -> kernel``: timed
        now (``tune=True``) or reused from the file's records for this CPU (see ``slimrt.tuning``)."""
        return dict(self._s.tuning_records())

    def memory_plan(self, *shapes):
        """Arena bytes the memory planner needs for these input shapes, and the unplanned sum."""
        return self._s.plan_info([list(s) for s in shapes])

    def __repr__(self):
        return f"Session(inputs={self.inputs}, outputs={self.output_names}, isa={self.isa!r}, threads={self.threads})"

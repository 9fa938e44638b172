"""Activation calibration: uint8 quantization parameters for every float value of a graph.

``calibrate(model, data, method)`` runs the model on calibration data in
batches -- on the C++ ``Session`` when the runtime can run it, else on the
numpy reference executor -- through a temporary copy that exposes every
intermediate value as an extra output, and feeds each value into an
``Observer``. The result maps value names to ``[scale, zero_point]`` for
asymmetric uint8 (``x ~ scale * (q - zero_point)``, q in 0..255); the range
always contains 0 so that zero is exact.

Methods:

* ``minmax``: the observed min and max.
* ``percentile``: the ``p`` and ``100 - p`` percentiles (from a histogram).
* ``entropy``: the TensorRT-style threshold T minimising KL(P || Q) between the
  2048-bin histogram of |x| clipped at T and its quantization to the available
  levels (256 for non-negative values, range [0, T]; 128 per side otherwise,
  range [-T, T]).

The observer keeps one exact histogram per value whose bins are aligned at 0
with a power-of-two width; when new data falls outside the covered span the
width doubles (adjacent bins merge exactly), so one pass over the data is
enough and memory stays bounded (``MAX_BINS``).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import CompressionError, Error

MAX_BINS = 8192
KL_BINS = 2048


class Observer:
    """Min, max and a signed histogram of every value seen."""

    def __init__(self):
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.zeros = 0           # values seen while no bin width exists yet (all zeros so far)
        self.width = None        # bin width, a power of two
        self.lo = 0              # index of hist[0]: bin i covers [i * width, (i + 1) * width)
        self.hist = np.zeros(0, dtype=np.int64)

    def update(self, x):
        x = np.asarray(x, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        self.count += x.size
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        amax = max(abs(self.min), abs(self.max))
        if amax == 0:
            self.zeros += x.size
            return
        if self.width is None:
            self.width = 2.0 ** math.ceil(math.log2(amax / (MAX_BINS / 4)))
            self.lo, self.hist = 0, np.zeros(1, dtype=np.int64)
        # grow the bin width until [min, max] fits in MAX_BINS bins
        while (math.floor(self.max / self.width) - math.floor(self.min / self.width) + 1) > MAX_BINS:
            self._merge()
        lo = math.floor(self.min / self.width)
        hi = math.floor(self.max / self.width)
        if lo < self.lo or hi >= self.lo + self.hist.size:
            grown = np.zeros(hi - lo + 1, dtype=np.int64)
            grown[self.lo - lo:self.lo - lo + self.hist.size] = self.hist
            self.lo, self.hist = lo, grown
        idx = np.floor(x / self.width).astype(np.int64) - self.lo
        np.clip(idx, 0, self.hist.size - 1, out=idx)
        self.hist += np.bincount(idx, minlength=self.hist.size)
        if self.zeros:
            self.hist[-self.lo] += self.zeros
            self.zeros = 0

    def _merge(self):
        """Doubles the bin width: bin i joins bin floor(i / 2)."""
        new_lo = self.lo // 2
        new_hi = (self.lo + self.hist.size - 1) // 2
        merged = np.zeros(new_hi - new_lo + 1, dtype=np.int64)
        np.add.at(merged, (np.arange(self.lo, self.lo + self.hist.size) // 2) - new_lo, self.hist)
        self.lo, self.hist, self.width = new_lo, merged, self.width * 2

    # ---------------------------------------------------------------- ranges
    def edges(self):
        return (self.lo + np.arange(self.hist.size + 1)) * self.width

    def quantile(self, q):
        """The q-quantile (0..1) of everything seen, linear within a bin."""
        if self.width is None:
            return 0.0
        cdf = np.concatenate([[0.0], np.cumsum(self.hist, dtype=np.float64)])
        v = float(np.interp(q * cdf[-1], cdf, self.edges()))
        return min(max(v, self.min), self.max)

    def abs_hist(self, bins=KL_BINS):
        """Histogram of |x| with ``bins`` equal bins over [0, max|x|], and that bin width."""
        amax = max(abs(self.min), abs(self.max))
        i = self.lo + np.arange(self.hist.size)
        folded = np.bincount(np.where(i >= 0, i, -i - 1), weights=self.hist.astype(np.float64))
        cdf = np.concatenate([[0.0], np.cumsum(folded)])
        grid = np.arange(cdf.size) * self.width
        new_edges = np.linspace(0.0, amax, bins + 1)
        c = np.interp(new_edges, grid, cdf)
        c[-1] = cdf[-1]  # the last bin ends at max|x| but its histogram bin may reach past it
        return np.diff(c), amax / bins

    def range(self, method="minmax", percentile=99.99):
        """(lo, hi) with lo <= 0 <= hi."""
        if self.count == 0:
            return 0.0, 0.0
        if method == "minmax" or self.width is None:
            lo, hi = self.min, self.max
        elif method == "percentile":
            p = percentile / 100.0
            lo, hi = self.quantile(1.0 - p), self.quantile(p)
        elif method == "entropy":
            hist, w = self.abs_hist()
            if self.min >= 0:
                t = kl_threshold(hist, 256) * w
                lo, hi = 0.0, t
            else:
                t = kl_threshold(hist, 128) * w
                lo, hi = -t, t
        else:
            raise CompressionError(f"unknown calibration method '{method}'")
        return min(lo, 0.0), max(hi, 0.0)


def kl_threshold(hist, levels: int, chunk: int = 128) -> int:
    """TensorRT's entropy calibration: the number of bins i (levels..len(hist)) whose clipped
    distribution P (outliers added to bin i-1) loses the least information (KL divergence) when
    quantized to ``levels`` levels. All candidates are evaluated in vectorised chunks."""
    hist = np.asarray(hist, dtype=np.float64)
    nb = hist.size
    if nb <= levels:
        return nb
    suffix = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # suffix[i] = sum(hist[i:])
    j = np.arange(nb)[None, :]
    cands = np.arange(levels, nb + 1)
    best_i, best_kl = nb, math.inf
    for part in np.array_split(cands, -(-cands.size // chunk)):
        ii = part[:, None]
        b = part.size
        valid = j < ii
        ref = np.where(valid, hist[None, :], 0.0)
        p = ref + np.where(j == ii - 1, suffix[part][:, None], 0.0)
        nz = p != 0
        # level of bin j when i bins are merged into `levels`: edges floor(t * i / levels)
        t = np.minimum(((j + 1) * levels + ii - 1) // ii - 1, levels - 1)
        flat = (np.arange(b)[:, None] * levels + t).ravel()
        qsum = np.bincount(flat, weights=ref.ravel(), minlength=b * levels).reshape(b, levels)
        nzc = np.bincount(flat, weights=nz.ravel().astype(np.float64), minlength=b * levels).reshape(b, levels)
        per = np.where(nzc > 0, qsum / np.maximum(nzc, 1.0), 0.0)
        q = np.take_along_axis(per, t, axis=1) * nz
        psum, qsum_all = p.sum(axis=1, keepdims=True), q.sum(axis=1, keepdims=True)
        ps = p / np.where(psum > 0, psum, 1.0)
        qs = q / np.where(qsum_all > 0, qsum_all, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(ps > 0, ps * np.log(ps / np.maximum(qs, 1e-10)), 0.0)
        kl = terms.sum(axis=1)
        kl[(psum[:, 0] == 0) | (qsum_all[:, 0] == 0)] = math.inf
        k = int(np.argmin(kl))
        if kl[k] < best_kl:
            best_kl, best_i = float(kl[k]), int(part[k])
    return best_i


def uint8_params(lo: float, hi: float):
    """[scale, zero_point] of asymmetric uint8 covering [lo, hi] (lo <= 0 <= hi)."""
    if hi - lo <= 0:
        return [1.0, 0]
    scale = (hi - lo) / 255.0
    zp = int(np.clip(np.rint(-lo / scale), 0, 255))
    return [float(np.float32(scale)), zp]


# ---------------------------------------------------------------- running the model
def normalize_data(model, data) -> tuple[dict, int]:
    """{input name: float array} and the number of samples, checking shapes against the model's inputs."""
    if isinstance(data, dict):
        feeds = dict(data)
        missing = [i.name for i in model.inputs if i.name not in feeds]
        extra = sorted(set(feeds) - {i.name for i in model.inputs})
        if missing or extra:
            raise CompressionError(f"calibration data must give the model inputs {[i.name for i in model.inputs]}"
                                   + (f"; missing {missing}" if missing else "")
                                   + (f"; unknown {extra}" if extra else ""))
    elif isinstance(data, (list, tuple)) and len(model.inputs) > 1:
        if len(data) != len(model.inputs):
            raise CompressionError(f"calibration data: the model takes {len(model.inputs)} inputs, got {len(data)}")
        feeds = {i.name: d for i, d in zip(model.inputs, data)}
    else:
        if len(model.inputs) != 1:
            raise CompressionError(f"the model takes {len(model.inputs)} inputs "
                                   f"{[i.name for i in model.inputs]}: pass calibration data as a dict")
        feeds = {model.inputs[0].name: data}
    out, n = {}, None
    for info in model.inputs:
        a = np.asarray(feeds[info.name])
        want = "(" + ", ".join("N" if d is None else str(d) for d in info.shape) + ")"
        if a.ndim != len(info.shape) or any(d is not None and d != s for d, s in zip(info.shape, a.shape)):
            raise CompressionError(f"calibration data for input '{info.name}' has shape {tuple(a.shape)}, "
                                   f"expected {want}")
        if a.shape[0] == 0:
            raise CompressionError(f"calibration data for input '{info.name}' holds no samples")
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise CompressionError("calibration inputs hold different numbers of samples")
        out[info.name] = a.astype(info.dtype, copy=False)
    return out, n


def observed_values(model) -> list:
    """Float activations worth calibrating: float graph inputs and every node output."""
    vals = [i.name for i in model.inputs if np.dtype(i.dtype).kind == "f"]
    for node in model.nodes:
        for o in node.outputs:
            if o not in vals:
                vals.append(o)
    return vals


def make_runner(model, names, engine="auto"):
    """A function feeds -> {name: array} computing ``names`` (values of ``model``).

    engine: "session" (C++ runtime), "reference" (numpy executor on the decoded
    model) or "auto" (the runtime when it can run this model, else the reference).
    """
    tmp = model.copy()
    tmp.outputs = list(model.outputs) + [v for v in names if v not in model.outputs]
    if engine in ("auto", "session"):
        try:
            from ..session import Session

            sess = Session(tmp)
            outs = sess.output_names

            def run_session(feeds):
                return dict(zip(outs, sess.run(feeds)))

            return run_session
        except (ImportError, AttributeError, Error) as e:
            if engine == "session":
                raise
            warnings.warn(f"calibration runs on the numpy reference executor (the runtime could not run the "
                          f"model: {type(e).__name__}: {e})", RuntimeWarning, stacklevel=3)
    from . import decode

    ref = decode(tmp)

    def run_reference(feeds):
        return dict(zip(ref.outputs, ref.run_reference(feeds)))

    return run_reference


def _batches(n, batch, progress, desc):
    starts = range(0, n, batch)
    if progress:
        try:
            from tqdm import tqdm

            return tqdm(starts, desc=desc, unit="batch", total=len(starts))
        except ImportError:
            pass
    return starts


def observe(model, data, batch_size=32, progress=False, engine="auto") -> dict:
    """{value name: Observer} after running ``model`` on all of ``data``."""
    feeds, n = normalize_data(model, data)
    names = observed_values(model)
    run = make_runner(model, names, engine)
    obs = {v: Observer() for v in names}
    for s in _batches(n, batch_size, progress, "calibrating"):
        got = run({k: a[s:s + batch_size] for k, a in feeds.items()})
        for v in names:
            if v in feeds:
                obs[v].update(feeds[v][s:s + batch_size])
            elif v in got and np.asarray(got[v]).dtype.kind == "f":
                obs[v].update(got[v])
    return {v: o for v, o in obs.items() if o.count}


def calibrate(model, data, method="minmax", percentile=99.99, batch_size=32, progress=False, engine="auto") -> dict:
    """{value name: [scale, zero_point]} (uint8) for every float value of ``model``."""
    from .recipe import CALIB_METHODS

    if method not in CALIB_METHODS:
        raise CompressionError(f"calibration method must be one of {list(CALIB_METHODS)}, got {method!r}")
    obs = observe(model, data, batch_size, progress, engine)
    return {v: uint8_params(*o.range(method, percentile)) for v, o in obs.items()}

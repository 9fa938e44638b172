"""Weight sharing: 1-D k-means (Deep Compression's trained quantization, without the retraining).

``kmeans_1d`` works on the sorted values: in one dimension every cluster of a
Lloyd step is a contiguous run of the sorted data between two midpoints, so an
assignment is one ``searchsorted`` of k-1 boundaries and the new centroids come
from a prefix sum -- O(k log n) per iteration after one sort.

``share_values`` clusters a flat array of weights whose output channel is
known (a whole matrix in row-major order, or the survivors of a pruned one) per
tensor or per channel, optionally on the int8 grid of a symmetric per-channel
(or per-tensor) scale, and returns indices plus a [groups, k] table.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CompressionError


def index_bits(k: int) -> int:
    """Bits per index for a table of k entries (at least 1)."""
    return max(1, math.ceil(math.log2(k)))


CORESET = 16384   # k-means++ trials run on at most this many weighted points (means of sorted runs)
N_INIT = 3        # k-means++ trials; the one with the lowest error is refined on all the data


def _coreset(xs):
    """(points, weights): the sorted data, or the means of CORESET equal runs of it."""
    if xs.size <= CORESET:
        return xs, np.ones(xs.size)
    bounds = np.linspace(0, xs.size, CORESET + 1).astype(np.int64)
    cs = np.concatenate([[0.0], np.cumsum(xs)])
    cnt = np.diff(bounds).astype(np.float64)
    return (cs[bounds[1:]] - cs[bounds[:-1]]) / cnt, cnt


def _kmeanspp(xs, ws, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (D^2 sampling, the best of 2 + log k candidates per step) over
    sorted weighted points; returns k sorted seeds."""
    n = xs.size
    trials = 2 + int(math.log(k))
    c = np.empty(k)
    c[0] = xs[min(int(np.searchsorted(np.cumsum(ws), rng.random() * ws.sum(), side="right")), n - 1)]
    d2 = (xs - c[0]) ** 2
    for j in range(1, k):
        cum = np.cumsum(ws * d2)
        total = cum[-1]
        if total <= 0:  # fewer distinct values than k: the caller checked, but stay safe
            c[j:] = c[j - 1]
            break
        cand = np.minimum(np.searchsorted(cum, rng.random(trials) * total, side="right"), n - 1)
        nd = np.minimum(d2[None, :], (xs[None, :] - xs[cand][:, None]) ** 2)
        best = int(np.argmin(nd @ ws))
        c[j] = xs[cand[best]]
        d2 = nd[best]
    return np.sort(c)


def _lloyd(xs, ws, c, max_iter, tol):
    """Weighted Lloyd iterations over sorted points; returns (centroids, weighted SSE)."""
    n = xs.size
    cw = np.concatenate([[0.0], np.cumsum(ws)])
    cs = np.concatenate([[0.0], np.cumsum(ws * xs)])
    span = xs[-1] - xs[0]
    for _ in range(max_iter):
        b = 0.5 * (c[1:] + c[:-1])
        pos = np.concatenate([[0], np.searchsorted(xs, b, side="left"), [n]])
        cnt = cw[pos[1:]] - cw[pos[:-1]]
        sums = cs[pos[1:]] - cs[pos[:-1]]
        new = np.where(cnt > 0, sums / np.where(cnt > 0, cnt, 1.0), c)
        if np.any(cnt == 0):
            new = _reseed_empty(xs, new, np.diff(pos))
        shift = float(np.max(np.abs(new - c)))
        c = new
        if shift <= tol * span:
            break
    lab = assign(xs, c)
    return c, float(ws @ (xs - c[lab]) ** 2)


def _reseed_empty(xs, c, npts):
    """Moves each empty centroid onto the point farthest from its own centroid."""
    lab = np.repeat(np.arange(c.size), npts)
    err = (xs - c[lab]) ** 2
    for j in np.flatnonzero(npts == 0):
        i = int(np.argmax(err))
        if err[i] <= 0:
            break
        c[j] = xs[i]
        err[i] = 0.0
    return np.sort(c)


def kmeans_1d(x, k: int, init: str = "kmeans++", rng=None, max_iter: int = 100, tol: float = 1e-6):
    """Lloyd's k-means in one dimension.

    Returns ``(centroids, labels)``: k sorted float64 centroids and, for every
    element of ``x``, the index of its nearest centroid. ``init``: "kmeans++"
    (N_INIT greedy k-means++ trials, each refined by Lloyd on a weighted coreset of
    the sorted data; the best is then refined on all of it) or "linear" (k evenly
    spaced values between min and max, Deep Compression's choice: it keeps the rare
    large weights). ``tol``: stop when no centroid moves more than
    ``tol * (max(x) - min(x))``. Deterministic for a given ``rng`` state. Needs at
    least k distinct values.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    xs = np.sort(x)
    uniq = np.unique(xs)
    if uniq.size < k:
        raise ValueError(f"{uniq.size} distinct values, {k} centroids")
    if uniq.size == k:
        return uniq.copy(), assign(x, uniq)
    if init == "linear":
        c = np.linspace(xs[0], xs[-1], k)
    elif init == "kmeans++":
        rng = rng if rng is not None else np.random.default_rng(0)
        px, pw = _coreset(xs)
        best = None
        for _ in range(N_INIT):
            ci, err = _lloyd(px, pw, _kmeanspp(px, pw, k, rng), max_iter, tol)
            if best is None or err < best[1]:
                best = (ci, err)
        c = best[0]
    else:
        raise ValueError(f"unknown k-means init '{init}'")
    c, _ = _lloyd(xs, np.ones(xs.size), c, max_iter, tol)
    return c, assign(x, c)


def assign(x, c):
    """Index of the nearest of the sorted centroids ``c`` for every element of ``x`` (ties go up)."""
    b = 0.5 * (c[1:] + c[:-1])
    return np.searchsorted(b, np.asarray(x, dtype=np.float64), side="right").astype(np.int64)


def _snap_int8(c, xs_norm):
    """Rounds normalised centroids to the int8 grid and re-assigns the (normalised) values to them."""
    q = np.unique(np.clip(np.rint(c), -127, 127))
    return q, assign(xs_norm, q)


def _pad(lut_row, k):
    out = np.empty(k)
    out[:lut_row.size] = lut_row
    out[lut_row.size:] = lut_row[-1] if lut_row.size else 0.0
    return out


def share_values(vals, ch, nch: int, k: int, mode: str = "per_tensor", init: str = "kmeans++",
                 rng=None, int8: bool = False, max_iter: int = 100, tol: float = 1e-6, name: str = "weight"):
    """Clusters ``vals`` (flat, float) whose channel (row) is ``ch`` into k shared values.

    Returns ``(indices int64 [n], lut float32 [groups, k], axis)``: ``axis`` is -1
    (one table) for ``per_tensor`` and 0 (one table per channel) for ``per_channel``.
    With ``int8`` every table entry is ``scale * q`` with q an integer in
    [-127, 127] and ``scale = max|w| / 127`` of the tensor (per_tensor) or of the
    channel (per_channel): int8 centroids on a symmetric grid.
    """
    vals = np.asarray(vals, dtype=np.float64).ravel()
    ch = np.asarray(ch, dtype=np.int64).ravel()
    rng = rng if rng is not None else np.random.default_rng(0)
    n_distinct = np.unique(vals).size
    if n_distinct < k:
        raise CompressionError(f"{name}: cannot share {vals.size} weights with {n_distinct} distinct values "
                               f"into {k} centroids; use share <= {n_distinct}")
    if mode == "per_tensor":
        scale = 1.0
        if int8:
            amax = float(np.max(np.abs(vals))) if vals.size else 0.0
            scale = float(np.float32(amax / 127.0)) if amax > 0 else 1.0
        xn = vals / scale
        c, _ = kmeans_1d(xn, k, init, rng, max_iter, tol)
        if int8:
            c, idx = _snap_int8(c, xn)
        else:
            idx = assign(xn, c)
        lut = (_pad(c, k) * scale)[None, :]
        return idx, lut.astype(np.float32), -1
    if mode != "per_channel":
        raise CompressionError(f"{name}: unknown share_mode '{mode}'")
    idx = np.zeros(vals.size, dtype=np.int64)
    lut = np.zeros((nch, k), dtype=np.float64)
    order = np.argsort(ch, kind="stable")
    bounds = np.searchsorted(ch[order], np.arange(nch + 1), side="left")
    for r in range(nch):
        sel = order[bounds[r]:bounds[r + 1]]
        if sel.size == 0:
            continue
        v = vals[sel]
        scale = 1.0
        if int8:
            amax = float(np.max(np.abs(v)))
            scale = float(np.float32(amax / 127.0)) if amax > 0 else 1.0
        vn = v / scale
        u = np.unique(vn)
        if u.size <= k:  # a channel with few distinct values keeps them all exactly
            c = u
        else:
            c, _ = kmeans_1d(vn, k, init, rng, max_iter, tol)
        if int8:
            c, i = _snap_int8(c, vn)
        else:
            i = assign(vn, c)
        idx[sel] = i
        lut[r] = _pad(c, k) * scale
    return idx, lut.astype(np.float32), 0

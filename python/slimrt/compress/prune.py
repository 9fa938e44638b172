"""Pruning: which weights of a [N, K] matrix survive.

Every function returns a boolean keep-mask of the matrix's shape; ``csr_layout``
turns a mask into CSR ``indptr`` / ``indices`` (row-major order, the order the
values of a ``formats.CSR`` are stored in).

* ``magnitude_mask``: the ``round(s * size)`` smallest |w| go (ties broken by
  position, so the result is deterministic).
* ``global_masks``: one threshold over several tensors (the smallest |w| over
  all of them go), Han et al.'s global magnitude pruning.
* ``nm_mask``: N:M structured sparsity -- in each group of M consecutive weights
  along K keep the N largest; a last partial group of r < M weights keeps
  min(N, r).
"""
from __future__ import annotations

import numpy as np

from ..errors import CompressionError


def n_pruned(size: int, sparsity: float) -> int:
    """How many weights a target sparsity removes (the nearest whole number)."""
    return int(np.floor(sparsity * size + 0.5))


def magnitude_mask(w: np.ndarray, sparsity: float, name: str = "weight") -> np.ndarray:
    w = np.asarray(w)
    if not 0.0 <= sparsity < 1.0:
        raise CompressionError(f"{name}: sparsity must be in [0, 1), got {sparsity!r}")
    drop = n_pruned(w.size, sparsity)
    if drop >= w.size:
        raise CompressionError(f"{name}: pruning {sparsity:g} of its {w.size} weights would remove all of them; "
                               f"lower the sparsity for this layer (per_layer)")
    keep = np.ones(w.size, dtype=bool)
    if drop:
        order = np.argsort(np.abs(w).ravel(), kind="stable")
        keep[order[:drop]] = False
    return keep.reshape(w.shape)


def global_masks(ws: dict, sparsity: float) -> dict:
    """One magnitude threshold across all tensors of ``ws`` ({name: array}); returns {name: mask}."""
    if not 0.0 <= sparsity < 1.0:
        raise CompressionError(f"global pruning: sparsity must be in [0, 1), got {sparsity!r}")
    names = list(ws)
    sizes = [int(np.asarray(ws[n]).size) for n in names]
    total = sum(sizes)
    keep = np.ones(total, dtype=bool)
    drop = n_pruned(total, sparsity)
    if drop:
        mags = np.concatenate([np.abs(np.asarray(ws[n], dtype=np.float32)).ravel() for n in names])
        order = np.argsort(mags, kind="stable")
        keep[order[:drop]] = False
    out, off = {}, 0
    for n, sz in zip(names, sizes):
        k = keep[off:off + sz]
        if not k.any():
            raise CompressionError(f"global pruning at sparsity {sparsity:g} would remove every weight of layer "
                                   f"'{n}' (its weights are all below the global threshold); give it its own "
                                   f"per_layer prune value or lower the sparsity")
        out[n] = k.reshape(np.shape(ws[n]))
        off += sz
    return out


def nm_mask(w: np.ndarray, n: int, m: int) -> np.ndarray:
    """N:M mask of a 2-D [rows, K] matrix along K."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise CompressionError("N:M pruning needs a 2-D weight matrix")
    if not 1 <= n < m:
        raise CompressionError(f"N:M pruning needs 1 <= N < M, got {n}:{m}")
    rows, k = w.shape
    groups = -(-k // m)
    mag = np.full((rows, groups * m), -1.0, dtype=np.float64)  # padding never beats a real weight
    mag[:, :k] = np.abs(w)
    mag = mag.reshape(rows, groups, m)
    # the N largest per group; ties keep the earlier position (stable sort of the negated magnitudes)
    order = np.argsort(-mag, axis=2, kind="stable")[:, :, :n]
    keep = np.zeros((rows, groups, m), dtype=bool)
    np.put_along_axis(keep, order, True, axis=2)
    keep = keep.reshape(rows, groups * m)[:, :k]
    return keep


def csr_layout(mask: np.ndarray):
    """(indptr int64 [rows+1], rows of each kept entry, column indices) of a 2-D keep-mask, row-major."""
    mask = np.asarray(mask, dtype=bool)
    r, c = np.nonzero(mask)
    indptr = np.zeros(mask.shape[0] + 1, dtype=np.int64)
    np.cumsum(mask.sum(axis=1), out=indptr[1:])
    return indptr, r, c


def index_dtype(cols: int):
    """uint16 column indices while they fit, int32 beyond."""
    return np.uint16 if cols <= 65536 else np.int32

"""Scalar weight quantizers: symmetric int8 and log2 (power-of-two), per output channel.

Both take a flat array of weights and the channel (row) of each element, so the
same code quantizes a whole matrix and the survivors of a pruned one (the
values of a CSR tensor, whose channel is their CSR row).

* int8: ``scale[c] = max|w_c| / 127`` (1.0 for an all-zero channel),
  ``q = clip(round_half_even(w / scale[c]), -127, 127)``, ``w ~ scale[c] * q``.
* log2 at ``bits`` (1 sign bit + bits-1 magnitude bits): ``scale[c]`` the best of 16 candidates in
  (max|w_c| / 2, max|w_c|] (lowest squared error of the channel; max|w_c| wins ties),
  ``w ~ sign * scale[c] * 2 ** -(mag - 1)`` with ``mag`` in 1 .. 2**(bits-1)-1;
  ``mag = 1 + round(-log2(|w| / scale[c]))`` (rounding in the log domain, so a
  value's relative error is at most 2**0.5); a magnitude beyond the smallest
  level flushes to zero (code 0) when zero is the nearer of the two.
"""
from __future__ import annotations

import numpy as np


def channel_absmax(vals, ch, nch):
    """max |vals| per channel (0 for a channel without elements)."""
    amax = np.zeros(nch, dtype=np.float64)
    if np.size(vals):
        np.maximum.at(amax, np.asarray(ch, dtype=np.int64), np.abs(np.asarray(vals, dtype=np.float64)))
    return amax


def int8_scales(vals, ch, nch) -> np.ndarray:
    amax = channel_absmax(vals, ch, nch)
    return np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)


def quantize_int8(vals, ch, nch):
    """(q int8 [n], scale float32 [nch])."""
    vals = np.asarray(vals, dtype=np.float64).ravel()
    scale = int8_scales(vals, ch, nch)
    q = np.clip(np.rint(vals / scale.astype(np.float64)[ch]), -127, 127).astype(np.int8)
    return q, scale


def _log2_codes(vals, s_elem, bits):
    """log2 codes of ``vals`` for the per-element scale ``s_elem`` (float64 arrays)."""
    maxmag = (1 << (bits - 1)) - 1
    r = np.abs(vals) / s_elem
    with np.errstate(divide="ignore"):
        e = np.rint(-np.log2(np.where(r > 0, r, 1.0)))
    mag = np.maximum(e + 1, 1)  # |w| above the scale clips to the top level
    smallest = 2.0 ** -(maxmag - 1)
    under = mag > maxmag
    mag = np.minimum(mag, maxmag).astype(np.int64)
    zero = (r == 0) | (under & (r < 0.5 * smallest))  # zero is nearer than the smallest level
    return np.where(zero, 0, mag | (np.signbit(vals).astype(np.int64) << (bits - 1)))


def decode_log2(codes, s_elem, bits):
    codes = np.asarray(codes, dtype=np.int64)
    mag = codes & ((1 << (bits - 1)) - 1)
    sign = np.where(codes >> (bits - 1), -1.0, 1.0)
    return np.where(codes == 0, 0.0, sign * s_elem * np.exp2(-(mag - 1.0)))


def quantize_log2(vals, ch, nch, bits: int = 4, search: int = 16):
    """(codes uint8 [n], scale float32 [nch]) for ``formats.Log2`` at ``bits``.

    The scale of channel c is the candidate ``max|w_c| * 2 ** (-j / search)``, j = 0 .. search-1,
    with the lowest squared error over the channel (j = 0 wins ties); ``search=1`` gives the plain max.
    """
    vals = np.asarray(vals, dtype=np.float64).ravel()
    ch = np.asarray(ch, dtype=np.int64).ravel()
    amax = channel_absmax(vals, ch, nch)
    base = np.where(amax > 0, amax, 1.0)
    best_s = base.astype(np.float32)
    best_err = np.full(nch, np.inf)
    for j in range(max(1, int(search))):
        s = (base * 2.0 ** (-j / search)).astype(np.float32)
        se = s.astype(np.float64)[ch]
        err = np.bincount(ch, weights=(decode_log2(_log2_codes(vals, se, bits), se, bits) - vals) ** 2,
                          minlength=nch)
        better = err < best_err
        best_err[better] = err[better]
        best_s[better] = s[better]
    codes = _log2_codes(vals, best_s.astype(np.float64)[ch], bits)
    return codes.astype(np.uint8), best_s

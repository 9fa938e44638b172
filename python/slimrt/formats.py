"""Tensor storage formats: how a constant tensor is laid out in a ``.slim`` file.

Each format is one class with its equation; the C++ runtime (csrc/format/)
describes the same formats with the same numbers, and a test checks that the
two agree.

======== ====== ==============================================================
format   code   value of element i
======== ====== ==============================================================
dense    0      ``data[i]`` (float32, float16, int8, uint8, int32, int64)
int8     1      ``scale[c] * q[i]``, c = the element's index along ``axis``
                (axis = -1: one scale for the whole tensor)
log2     2      ``code == 0 -> 0``; else
                ``sign * scale[c] * 2 ** -(mag - 1)`` with
                ``sign = -1 if code >> (bits-1) else 1``,
                ``mag = code & (2 ** (bits-1) - 1)`` (mag >= 1)
codebook 3      ``lut[c, idx[i]]`` (c as for int8; ``lut`` is [groups, K]),
                indices packed LSB-first at ``bits`` per index
csr      4      2-D ``[rows, cols]``: row r holds the entries
                ``indptr[r] .. indptr[r+1]``; column ``indices[j]``, value =
                element j of ``values`` (a dense, int8, log2 or codebook
                tensor of shape [nnz]). A per-channel values tensor has
                ``axis = 0`` and one scale / lut row per CSR **row** (not per
                nnz): the channel of element j is the row that holds it.
======== ====== ==============================================================

Packing of sub-byte codes (log2 and codebook): element i occupies bits
``[i*bits, (i+1)*bits)`` of the little-endian bit stream, i.e. byte
``(i*bits) // 8``, starting at bit ``(i*bits) % 8``, spilling into the next byte
when needed (only for bits in {3, 5, 6, 7}).
"""
from __future__ import annotations

import numpy as np

from .errors import FormatError

DENSE, INT8, LOG2, CODEBOOK, CSR = 0, 1, 2, 3, 4
FORMAT_NAMES = {DENSE: "dense", INT8: "int8", LOG2: "log2", CODEBOOK: "codebook", CSR: "csr"}

# dtype codes shared with the C++ loader
DTYPES = {
    "float32": 1, "float16": 2, "int8": 3, "uint8": 4, "int16": 5, "uint16": 6,
    "int32": 7, "int64": 8,
}
DTYPE_BY_CODE = {v: np.dtype(k) for k, v in DTYPES.items()}


def dtype_code(dt) -> int:
    name = np.dtype(dt).name
    if name not in DTYPES:
        raise FormatError(f"dtype {name} cannot be stored in a .slim file")
    return DTYPES[name]


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Packs integer codes in [0, 2**bits) LSB-first into a uint8 array."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8).ravel()
    if not 1 <= bits <= 8:
        raise FormatError(f"code width {bits} bits is outside 1..8")
    if codes.size and int(codes.max()) >= (1 << bits):
        raise FormatError(f"code {int(codes.max())} does not fit in {bits} bits")
    if bits == 8:
        return codes.copy()
    bitarr = np.unpackbits(codes[:, None], axis=1, bitorder="little")[:, :bits].ravel()
    return np.packbits(bitarr, bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    packed = np.ascontiguousarray(packed, dtype=np.uint8).ravel()
    if bits == 8:
        return packed[:count].copy()
    need = (count * bits + 7) // 8
    if packed.size < need:
        raise FormatError(f"packed codes hold {packed.size} bytes, {need} needed")
    bitarr = np.unpackbits(packed, bitorder="little")[: count * bits].reshape(count, bits)
    out = np.zeros((count, 8), dtype=np.uint8)
    out[:, :bits] = bitarr
    return np.packbits(out, axis=1, bitorder="little").ravel()


def packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def _channel_index(shape, axis, channels=None):
    """Channel index of every element (flattened), for per-channel formats."""
    if axis < 0:
        return None
    if channels is not None:  # values of a CSR tensor: the caller supplies the rows
        raise FormatError("per-row values of a CSR tensor decode through their CSR")
    idx = np.arange(shape[axis]).reshape([-1 if d == axis else 1 for d in range(len(shape))])
    return np.broadcast_to(idx, shape).ravel()


class Tensor:
    """Base of every stored tensor. ``shape`` is the logical (decoded) shape."""

    format = -1
    shape: tuple

    @property
    def format_name(self) -> str:
        return FORMAT_NAMES[self.format]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def to_dense(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def buffers(self) -> list:
        """The arrays written to the file, in order."""
        raise NotImplementedError  # pragma: no cover

    @property
    def nbytes(self) -> int:
        return int(sum(b.nbytes for b in self.buffers()))

    def __repr__(self):
        return f"{type(self).__name__}(shape={self.shape}, bytes={self.nbytes})"


class Dense(Tensor):
    format = DENSE

    def __init__(self, data):
        data = np.asarray(data)
        dtype_code(data.dtype)
        self.data = np.ascontiguousarray(data)
        self.shape = tuple(int(d) for d in self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    def to_dense(self, ch=None):
        return self.data

    def buffers(self):
        return [self.data]


class QInt8(Tensor):
    """``w = scale[c] * q``: symmetric int8, per-tensor (axis=-1) or per-channel."""

    format = INT8

    def __init__(self, q, scale, axis=-1, shape=None, channels=None):
        self.q = np.ascontiguousarray(q, dtype=np.int8)
        self.shape = tuple(int(d) for d in (shape if shape is not None else self.q.shape))
        self.scale = np.ascontiguousarray(scale, dtype=np.float32).ravel()
        self.axis = int(axis)
        self.channels = channels
        _check_channels(self.shape, self.axis, self.scale.size, "int8 scale", channels)
        if self.q.size != self.size:
            raise FormatError(f"int8 tensor holds {self.q.size} values for shape {self.shape}")

    def to_dense(self, ch=None):
        q = self.q.ravel().astype(np.float32)
        ch = _channel_index(self.shape, self.axis, self.channels) if ch is None else ch
        s = self.scale[0] if ch is None else self.scale[ch]
        return (q * s).reshape(self.shape).astype(np.float32)

    def buffers(self):
        return [self.q.ravel(), self.scale]


class Log2(Tensor):
    """``w = sign * scale[c] * 2**-(mag-1)``, code 0 = zero; codes packed at ``bits``."""

    format = LOG2

    def __init__(self, codes, scale, bits, axis=-1, shape=None, packed=False, channels=None):
        self.bits = int(bits)
        if not 2 <= self.bits <= 8:
            raise FormatError(f"log2 code width {self.bits} is outside 2..8")
        self.shape = tuple(int(d) for d in (shape if shape is not None else np.shape(codes)))
        self.packed = (np.ascontiguousarray(codes, dtype=np.uint8).ravel() if packed
                       else pack_bits(codes, self.bits))
        self.scale = np.ascontiguousarray(scale, dtype=np.float32).ravel()
        self.axis = int(axis)
        self.channels = channels
        _check_channels(self.shape, self.axis, self.scale.size, "log2 scale", channels)
        if self.packed.size != packed_size(self.size, self.bits):
            raise FormatError("log2 codes do not match the tensor's shape")

    @property
    def codes(self):
        return unpack_bits(self.packed, self.bits, self.size)

    def to_dense(self, ch=None):
        c = self.codes.astype(np.int32)
        sign = np.where(c >> (self.bits - 1), -1.0, 1.0)
        mag = c & ((1 << (self.bits - 1)) - 1)
        ch = _channel_index(self.shape, self.axis, self.channels) if ch is None else ch
        s = self.scale[0] if ch is None else self.scale[ch]
        v = np.where(c == 0, 0.0, sign * s * np.exp2(-(mag - 1.0)))
        return v.reshape(self.shape).astype(np.float32)

    def buffers(self):
        return [self.packed, self.scale]


class Codebook(Tensor):
    """``w = lut[c, idx]``: k-means weight sharing, indices packed at ``bits``."""

    format = CODEBOOK

    def __init__(self, indices, lut, bits, axis=-1, shape=None, packed=False, channels=None):
        self.bits = int(bits)
        if not 1 <= self.bits <= 8:
            raise FormatError(f"codebook index width {self.bits} is outside 1..8")
        self.shape = tuple(int(d) for d in (shape if shape is not None else np.shape(indices)))
        self.axis = int(axis)
        lut = np.asarray(lut)
        if lut.dtype not in (np.float32, np.int8):
            lut = lut.astype(np.float32)
        self.channels = channels
        groups = 1 if self.axis < 0 else (channels if channels is not None else self.shape[self.axis])
        self.lut = np.ascontiguousarray(lut).reshape(groups, -1)
        if self.lut.shape[1] > (1 << self.bits) or self.lut.shape[1] < 1:
            raise FormatError(f"codebook of {self.lut.shape[1]} entries does not fit {self.bits}-bit indices")
        if packed:
            self.packed = np.ascontiguousarray(indices, dtype=np.uint8).ravel()
        else:
            idx = np.asarray(indices)
            if idx.size and int(idx.max()) >= self.lut.shape[1]:
                raise FormatError("codebook index out of range")
            self.packed = pack_bits(idx, self.bits)
        if self.packed.size != packed_size(self.size, self.bits):
            raise FormatError("codebook indices do not match the tensor's shape")

    @property
    def indices(self):
        return unpack_bits(self.packed, self.bits, self.size)

    def to_dense(self, ch=None):
        idx = self.indices.astype(np.int64)
        ch = _channel_index(self.shape, self.axis, self.channels) if ch is None else ch
        row = 0 if ch is None else ch
        return self.lut[row, idx].reshape(self.shape).astype(np.float32)

    def buffers(self):
        return [self.packed, self.lut.ravel()]


def relative_codes(indptr, indices, bits: int) -> np.ndarray:
    """Relative column codes of a CSR matrix (``docs/format.md``, "relative indices").

    Per row a cursor starts at -1; a code c < E = 2^bits - 1 moves it by c + 1 and places the
    next entry there; the escape code E moves it by E without an entry. Columns must increase
    strictly within each row. Returns the unpacked codes (uint8)."""
    if not 1 <= bits <= 8:
        raise FormatError(f"relative CSR index width {bits} bits is outside 1..8")
    e = (1 << bits) - 1
    ip = np.asarray(indptr, dtype=np.int64)
    cols = np.asarray(indices, dtype=np.int64)
    if cols.size == 0:
        return np.zeros(0, np.uint8)
    prev = np.empty_like(cols)
    prev[1:] = cols[:-1]
    starts = ip[:-1][np.diff(ip) > 0]
    prev[starts] = -1
    gap = cols - prev
    if np.any(gap < 1):
        raise FormatError("relative CSR indices need strictly increasing columns within each row")
    nesc = (gap - 1) // e
    out = np.full(cols.size + int(nesc.sum()), e, np.uint8)
    out[np.cumsum(nesc + 1) - 1] = ((gap - 1) % e).astype(np.uint8)
    return out


def best_index_bits(indptr, indices, cols: int) -> int:
    """The relative index width (1..8) that stores the columns in the fewest bytes, or 0 when
    absolute uint16/int32 indices are as small (or the rows are not sorted)."""
    n = int(np.asarray(indices).size)
    best, best_bytes = 0, n * (2 if cols <= 65536 else 4)
    for bits in range(1, 9):
        try:
            count = relative_codes(indptr, indices, bits).size
        except FormatError:
            return 0
        size = packed_size(count, bits)
        if size < best_bytes:
            best, best_bytes = bits, size
    return best


class CSR(Tensor):
    """2-D sparse matrix: ``indptr`` (int32/int64, rows+1), ``indices`` (uint16/int32, nnz), ``values``.

    ``index_bits`` 0 stores the column indices as they are; 1..8 stores them relative (see
    ``relative_codes``) packed at that width, which the loader decodes once. In memory
    ``indices`` are always absolute."""

    format = CSR

    def __init__(self, shape, indptr, indices, values: Tensor, index_bits: int = 0):
        self.shape = tuple(int(d) for d in shape)
        if len(self.shape) != 2:
            raise FormatError("CSR tensors are 2-D")
        rows, cols = self.shape
        self.indptr = np.ascontiguousarray(indptr)
        if self.indptr.dtype not in (np.int32, np.int64):
            self.indptr = self.indptr.astype(np.int64 if self.indptr.size and self.indptr[-1] >= 2**31 else np.int32)
        self.indices = np.ascontiguousarray(indices)
        if self.indices.dtype not in (np.uint16, np.int32):
            self.indices = self.indices.astype(np.uint16 if cols <= 65536 else np.int32)
        if not isinstance(values, Tensor):
            values = Dense(np.asarray(values, dtype=np.float32))
        if isinstance(values, CSR):
            raise FormatError("CSR values cannot themselves be CSR")
        self.values = values
        nnz = self.indices.size
        if self.indptr.size != rows + 1 or (rows + 1 and (self.indptr[0] != 0 or self.indptr[-1] != nnz)):
            raise FormatError("CSR indptr does not match rows and nnz")
        if np.any(np.diff(self.indptr.astype(np.int64)) < 0):
            raise FormatError("CSR indptr is not non-decreasing")
        if nnz and (int(self.indices.min()) < 0 or int(self.indices.max()) >= cols):
            raise FormatError("CSR column index out of range")
        if values.size != nnz or len(values.shape) != 1:
            raise FormatError("CSR values must be a 1-D tensor of nnz elements")
        if getattr(values, "axis", -1) >= 0 and getattr(values, "channels", None) != rows:
            raise FormatError("per-channel CSR values need one channel per row (channels=rows)")
        self.index_bits = int(index_bits)
        self._packed_index = None
        if self.index_bits:
            self.index_buffer()  # validates (sorted rows, width 1..8)

    def index_buffer(self) -> np.ndarray:
        """The stored index bytes: the absolute indices, or the packed relative codes."""
        if not self.index_bits:
            return self.indices
        if self._packed_index is None:
            self._packed_index = pack_bits(relative_codes(self.indptr, self.indices, self.index_bits),
                                           self.index_bits)
        return self._packed_index

    @classmethod
    def from_dense(cls, dense: np.ndarray, values_fn=None):
        dense = np.asarray(dense, dtype=np.float32)
        rows, cols = dense.shape
        mask = dense != 0
        indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
        r, c = np.nonzero(mask)
        vals = dense[r, c]
        values = values_fn(vals, r) if values_fn else Dense(vals)
        return cls((rows, cols), indptr, c, values)

    @property
    def nnz(self):
        return int(self.indices.size)

    def to_dense(self):
        rows, cols = self.shape
        out = np.zeros((rows, cols), dtype=np.float32)
        r = np.repeat(np.arange(rows), np.diff(self.indptr.astype(np.int64)))
        if getattr(self.values, "axis", -1) >= 0:
            vals = self.values.to_dense(ch=r).ravel()
        else:
            vals = self.values.to_dense().ravel()
        out[r, self.indices.astype(np.int64)] = vals
        return out

    def buffers(self):
        return [self.indptr, self.index_buffer()] + self.values.buffers()


def _check_channels(shape, axis, n, what, channels=None):
    if axis < -1 or axis >= max(len(shape), 1):
        raise FormatError(f"{what}: axis {axis} out of range for shape {shape}")
    want = 1 if axis < 0 else (channels if channels is not None else shape[axis])
    if n != want:
        raise FormatError(f"{what}: {n} values, expected {want}")


def as_tensor(x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return Dense(np.asarray(x))

"""Reads and writes ``.slim`` files (the byte layout is specified in docs/format.md).

* ``save(model, path)`` / ``dumps(model) -> bytes`` write a model. ``save`` is atomic:
  it writes a temp file in the target's directory, fsyncs it, has the C++ loader
  validate it, then ``os.replace``-s it over the target; on any error nothing is
  left behind and an existing target is untouched.
* ``load(path)`` / ``loads(data)`` read one through the validating C++ loader
  (``_core.load_model_def``), the only parser of the format, and rebuild the
  ``formats.*`` tensors from the buffers it returns.

Layout in brief: a 64-byte header (magic, version, file size, section count,
CRC), a section table, a graph section, a tensor table and a data section in
which every tensor buffer starts at a multiple of 64 (the runtime maps the file
and uses the bytes in place). CRC-32 (zlib's) covers the header + section table,
the graph and tensor-table sections and each buffer; every other byte is zero
padding, which the loader checks.
"""
from __future__ import annotations

import os
import struct
import tempfile
import zlib

import numpy as np

from ._native import core as _core
from .errors import FormatError
from .formats import CODEBOOK, DENSE, DTYPES, INT8, LOG2, Codebook, Dense, Log2, QInt8, Tensor
from .formats import CSR as CSRTensor  # formats.CSR is the class (it shadows the format code there)
from .ir import FLOAT, FLOATS, INT, INTS, OPS, STR, Model, Node, ValueInfo

MAGIC = b"\x89SLIM\r\n\x1a"
VERSION = (1, 1)
HEADER_SIZE = 64
HEADER_CRC_OFFSET = 60
SECTION_ENTRY = 32
BUFFER_ENTRY = 24
ALIGN = 64
SECTION_GRAPH, SECTION_TENSORS, SECTION_DATA = 1, 2, 3
ATTR_KINDS = {INT: 1, FLOAT: 2, STR: 3, INTS: 4, FLOATS: 5}
MAX_RANK = 8
MAX_NAME = 4096
_U32 = 0xFFFFFFFF
CSR = CSRTensor.format  # 4

__all__ = ["save", "load", "dumps", "loads", "MAGIC", "VERSION"]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _array_bytes(a: np.ndarray) -> memoryview:
    """The little-endian bytes of an array, without a copy when it already is one."""
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return memoryview(a.reshape(-1).view(np.uint8))


class _Stream:
    """A little-endian byte stream that can record where each named field lies."""

    def __init__(self, fields: dict | None):
        self.b = bytearray()
        self.fields = fields

    def put(self, fmt: str, value, field: str | None = None):
        if self.fields is not None and field is not None:
            self.fields[field] = (len(self.b), "<" + fmt)
        try:
            self.b += struct.pack("<" + fmt, value)
        except struct.error as e:
            raise FormatError(f"{field or 'field'}: value {value!r} does not fit ({e})") from None

    def text(self, s: str, what: str, field: str | None = None, limit: int = MAX_NAME):
        raw = s.encode("utf-8")
        if len(raw) > limit:
            raise FormatError(f"{what} is {len(raw)} bytes long, at most {limit} allowed")
        if b"\0" in raw:
            raise FormatError(f"{what} contains a NUL character")
        self.put("I", len(raw), field and field + ".len")
        if self.fields is not None and field is not None:
            self.fields[field] = (len(self.b), f"{len(raw)}s")
        self.b += raw


def _values_key(key: str) -> str:
    """Layout key of a CSR tensor's values: tensor[w] -> tensor[w/values]."""
    return key[:-1] + "/values]"


def _count(n: int, what: str) -> int:
    if n > _U32:
        raise FormatError(f"{what} {n} exceeds 2**32 - 1")
    return n


class _Writer:
    """Turns a validated Model into the sections of a .slim file."""

    def __init__(self, model: Model, trace: bool = False):
        self.model = model
        self.trace = trace
        self.graph_fields = {} if trace else None
        self.table_fields = {} if trace else None
        self.buffers: list[tuple[str, memoryview]] = []  # (field prefix, bytes) in file order

    # ---- tensor table ----
    def _collect(self, key: str, t: Tensor):
        """Buffers of a tensor in table order (the CSR values' after the CSR's own)."""
        if isinstance(t, CSRTensor):
            arrays = [t.indptr, t.index_buffer()]
        else:
            arrays = t.buffers()
        for k, a in enumerate(arrays):
            self.buffers.append((f"{key}.buffer[{k}]", _array_bytes(a)))
        if isinstance(t, CSRTensor):
            self._collect(_values_key(key), t.values)

    def _tensor(self, s: _Stream, key: str, name: str, t: Tensor, offsets: dict, nested_rows=None):
        f = key + "."
        s.text(name, f"tensor '{name}' name", key + ".name")
        shape = tuple(int(d) for d in t.shape)
        if len(shape) > MAX_RANK:
            raise FormatError(f"tensor '{name}': rank {len(shape)} exceeds {MAX_RANK}")
        fmt = t.format
        if fmt == DENSE:
            dtype = DTYPES[t.data.dtype.name]
        elif fmt == INT8:
            dtype = DTYPES["int8"]
        elif fmt in (LOG2, CODEBOOK):
            dtype = DTYPES["uint8"]
        elif fmt == CSR:
            dtype = DTYPES["float32"]
        else:
            raise FormatError(f"tensor '{name}': unknown storage format {fmt}")
        axis = int(getattr(t, "axis", -1))
        bits = int(getattr(t, "bits", 0)) if fmt in (LOG2, CODEBOOK) else (t.index_bits if fmt == CSR else 0)
        lut_dtype = DTYPES[t.lut.dtype.name] if fmt == CODEBOOK else 0
        lut_groups, lut_size = (t.lut.shape if fmt == CODEBOOK else (0, 0))
        indptr_dtype = DTYPES[t.indptr.dtype.name] if fmt == CSR else 0
        indices_dtype = (DTYPES["uint8"] if t.index_bits else DTYPES[t.indices.dtype.name]) if fmt == CSR else 0
        nnz = t.nnz if fmt == CSR else 0
        nbuf = 1 if fmt == DENSE else 2
        for fm, v, fld in (("B", fmt, "format"), ("B", dtype, "dtype"), ("B", len(shape), "rank"), ("B", bits, "bits"),
                           ("i", axis, "axis"), ("B", lut_dtype, "lut_dtype"), ("B", indptr_dtype, "indptr_dtype"),
                           ("B", indices_dtype, "indices_dtype"), ("B", nbuf, "n_buffers"),
                           ("q", lut_groups, "lut_groups"), ("q", lut_size, "lut_size"), ("q", nnz, "nnz")):
            s.put(fm, int(v), f + fld)
        for d, n in enumerate(shape):
            s.put("q", n, f"{f}dims[{d}]")
        for k in range(nbuf):
            off, size, crc = offsets.get(f"{key}.buffer[{k}]", (0, 0, 0))
            s.put("Q", off, f"{f}buffer[{k}].offset")
            s.put("Q", size, f"{f}buffer[{k}].size")
            s.put("I", crc, f"{f}buffer[{k}].crc")
            s.put("I", 0, f"{f}buffer[{k}].reserved")
        if fmt == CSR:
            self._tensor(s, _values_key(key), "", t.values, offsets, nested_rows=shape[0])

    def tensor_table(self, offsets: dict, fields: dict | None) -> bytes:
        s = _Stream(fields)
        consts = self.model.constants
        s.put("I", _count(len(consts), "tensor count"), "tensors.count")
        for name, t in consts.items():
            self._tensor(s, f"tensor[{name}]", name, t, offsets)
        return bytes(s.b)

    # ---- graph ----
    def graph(self) -> bytes:
        m = self.model
        s = _Stream(self.graph_fields)
        names: list[str] = []
        index: dict[str, int] = {}
        records = []  # (name, dtype code, shape, tensor index)
        for vi in m.inputs:
            if vi.dtype not in DTYPES:
                raise FormatError(f"input '{vi.name}': dtype {vi.dtype} cannot be stored in a .slim file")
            records.append((vi.name, DTYPES[vi.dtype], [-1 if d is None else int(d) for d in vi.shape], -1))
        for ti, (name, t) in enumerate(m.constants.items()):
            dt = t.data.dtype.name if isinstance(t, Dense) else "float32"
            records.append((name, DTYPES[dt], [], ti))
        for n in m.nodes:
            for o in n.outputs:
                records.append((o, DTYPES["float32"], [], -1))
        for name, _, shape, _ in records:
            index[name] = len(names)
            names.append(name)
            if len(shape) > MAX_RANK:
                raise FormatError(f"input '{name}': rank {len(shape)} exceeds {MAX_RANK}")
        s.put("I", _count(len(records), "value count"), "values.count")
        for name, dt, shape, ti in records:
            f = f"value[{name}]."
            s.text(name, f"value '{name}' name", f + "name")
            s.put("B", dt, f + "dtype")
            s.put("B", len(shape), f + "rank")
            s.put("H", 0, f + "reserved")
            s.put("i", ti, f + "tensor")
            for d, n in enumerate(shape):
                s.put("q", n, f"{f}dims[{d}]")
        s.put("I", len(m.inputs), "inputs.count")
        for k, vi in enumerate(m.inputs):
            s.put("i", index[vi.name], f"input[{k}]")
        s.put("I", _count(len(m.outputs), "output count"), "outputs.count")
        for k, o in enumerate(m.outputs):
            s.put("i", index[o], f"output[{k}]")
        s.put("I", _count(len(m.nodes), "node count"), "nodes.count")
        for k, n in enumerate(m.nodes):
            f = f"node[{k}]."
            s.text(n.op, f"node '{n.name}' op", f + "op")
            s.text(n.name, f"node '{n.name}' name", f + "name")
            s.put("I", len(n.inputs), f + "inputs.count")
            for j, i in enumerate(n.inputs):
                s.put("i", index[i], f"{f}input[{j}]")
            s.put("I", len(n.outputs), f + "outputs.count")
            for j, o in enumerate(n.outputs):
                s.put("i", index[o], f"{f}output[{j}]")
            schema = OPS[n.op][2]
            s.put("I", len(n.attrs), f + "attrs.count")
            for key, v in sorted(n.attrs.items()):  # sorted: the loader keeps attributes and metadata in key order
                a = f"{f}attr[{key}]"
                typ = schema[key][0]
                s.text(key, f"node '{n.name}' attribute name", a + ".name")
                s.put("B", ATTR_KINDS[typ], a + ".kind")
                if typ == INT:
                    s.put("q", int(v), a)
                elif typ == FLOAT:
                    s.put("d", float(v), a)
                elif typ == STR:
                    s.text(v, f"node '{n.name}' attribute '{key}'", a)
                else:
                    s.put("I", _count(len(v), f"attribute '{key}' length"), a + ".len")
                    for i, e in enumerate(v):
                        s.put("q" if typ == INTS else "d", int(e) if typ == INTS else float(e), f"{a}[{i}]")
        s.put("I", _count(len(m.metadata), "metadata count"), "metadata.count")
        for k, v in m.metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise FormatError(f"metadata {k!r}: keys and values must be str")
        for k, v in sorted(m.metadata.items()):
            s.text(k, f"metadata key '{k}'", f"metadata[{k}].key")
            s.text(v, f"metadata '{k}' value", f"metadata[{k}].value", limit=_U32)
        return bytes(s.b)

    # ---- assembly ----
    def plan(self):
        """Returns (pieces, layout): pieces is [(file offset, bytes-like)] in order; zero bytes fill the gaps."""
        graph = self.graph()
        for name, t in self.model.constants.items():
            self._collect(f"tensor[{name}]", t)
        nsec = 3
        table_end = HEADER_SIZE + nsec * SECTION_ENTRY
        graph_off = _align(table_end)
        tensors_off = _align(graph_off + len(graph))
        table_size = len(self.tensor_table({}, None))  # fixed-width fields: the size does not depend on offsets
        data_off = _align(tensors_off + table_size)
        offsets = {}
        pos = data_off
        for key, mv in self.buffers:
            pos = _align(pos)
            offsets[key] = (pos, mv.nbytes, zlib.crc32(mv))
            pos += mv.nbytes
        data_size = _align(pos) - data_off
        table = self.tensor_table(offsets, self.table_fields)
        assert len(table) == table_size
        file_size = data_off + data_size

        sections = [(SECTION_GRAPH, zlib.crc32(graph), graph_off, len(graph)),
                    (SECTION_TENSORS, zlib.crc32(table), tensors_off, len(table)),
                    (SECTION_DATA, 0, data_off, data_size)]
        head = bytearray(HEADER_SIZE)
        head[0:8] = MAGIC
        struct.pack_into("<HHIQII", head, 8, VERSION[0], VERSION[1], HEADER_SIZE, file_size, nsec, 0)
        stable = b"".join(struct.pack("<IIQQQ", k, c, o, n, 0) for k, c, o, n in sections)
        struct.pack_into("<I", head, HEADER_CRC_OFFSET, zlib.crc32(stable, zlib.crc32(bytes(head[:HEADER_CRC_OFFSET]))))
        pieces = [(0, bytes(head) + stable), (graph_off, graph), (tensors_off, table)]
        pieces += [(offsets[key][0], mv) for key, mv in self.buffers]
        layout = None
        if self.trace:
            layout = self._layout(sections, graph_off, tensors_off, offsets, file_size, table_end)
        return pieces, file_size, layout

    def _layout(self, sections, graph_off, tensors_off, offsets, file_size, table_end):
        """Absolute offset and struct format of every named field, and where each CRC lies and what it covers."""
        fields = {
            "header.magic": (0, "8s"), "header.version_major": (8, "<H"), "header.version_minor": (10, "<H"),
            "header.header_size": (12, "<I"), "header.file_size": (16, "<Q"), "header.section_count": (24, "<I"),
            "header.flags": (28, "<I"), "header.crc": (HEADER_CRC_OFFSET, "<I"),
        }
        names = {SECTION_GRAPH: "graph", SECTION_TENSORS: "tensors", SECTION_DATA: "data"}
        for i, (kind, _, _, _) in enumerate(sections):
            base = HEADER_SIZE + i * SECTION_ENTRY
            for fld, (o, fm) in {"kind": (0, "<I"), "crc": (4, "<I"), "offset": (8, "<Q"), "size": (16, "<Q"),
                                 "reserved": (24, "<Q")}.items():
                fields[f"section[{names[kind]}].{fld}"] = (base + o, fm)
        fields.update({k: (graph_off + o, fm) for k, (o, fm) in self.graph_fields.items()})
        fields.update({k: (tensors_off + o, fm) for k, (o, fm) in self.table_fields.items()})
        crcs = []  # (crc field offset, [(start, end), ...]) in the order they must be recomputed
        for key, (off, size, _) in offsets.items():
            fields[key + ".data"] = (off, f"{size}s")
            crcs.append((fields[key + ".crc"][0], [(off, off + size)]))
        for i, (kind, _, off, size) in enumerate(sections):
            if kind != SECTION_DATA:
                crcs.append((HEADER_SIZE + i * SECTION_ENTRY + 4, [(off, off + size)]))
        crcs.append((HEADER_CRC_OFFSET, [(0, HEADER_CRC_OFFSET), (HEADER_SIZE, table_end)]))
        return {"fields": fields, "crcs": crcs, "file_size": file_size}


def _emit(pieces, file_size, write):
    pos = 0
    for off, data in pieces:
        if off > pos:
            write(bytes(off - pos))
        write(data)
        pos = off + len(data)
    if file_size > pos:
        write(bytes(file_size - pos))


def dumps(model: Model) -> bytes:
    """The .slim bytes of ``model`` (validated first)."""
    model.validate()
    pieces, size, _ = _Writer(model).plan()
    out = bytearray()
    _emit(pieces, size, out.extend)
    return bytes(out)


def _dumps_with_layout(model: Model):
    """``(bytes, layout)``: the file and where each field and CRC lies (for tests that forge files)."""
    model.validate()
    pieces, size, layout = _Writer(model, trace=True).plan()
    out = bytearray()
    _emit(pieces, size, out.extend)
    return bytes(out), layout


def _file_mode() -> int:
    """0o666 minus the process umask (read without changing it, so threads are safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


def save(model: Model, path) -> str:
    """Writes ``model`` to ``path`` atomically; returns the path.

    The bytes go to a temp file in the same directory, which is fsynced and then
    validated by the C++ loader before ``os.replace`` puts it in place. On any
    error the temp file is removed and an existing ``path`` is left as it was.
    """
    model.validate()
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    pieces, size, _ = _Writer(model).plan()
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode())
            _emit(pieces, size, f.write)
            f.flush()
            os.fsync(f.fileno())
        _core.validate_model_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def load(path) -> Model:
    """Reads a .slim file through the validating C++ loader."""
    return _from_def(_core.load_model_def(os.fspath(path)))


def loads(data) -> Model:
    """``load`` for the bytes of a .slim file."""
    return _from_def(_core.load_model_def_bytes(data))


def _tensor(d: dict, rows=None) -> Tensor:
    fmt, shape, axis = d["format"], tuple(d["shape"]), d["axis"]
    channels = rows if (rows is not None and axis >= 0) else None
    if fmt == DENSE:
        return Dense(d["data"])
    if fmt == INT8:
        return QInt8(d["q"], d["scale"], axis=axis, shape=shape, channels=channels)
    if fmt == LOG2:
        return Log2(d["codes"], d["scale"], d["bits"], axis=axis, shape=shape, packed=True, channels=channels)
    if fmt == CODEBOOK:
        return Codebook(d["codes"], d["lut"], d["bits"], axis=axis, shape=shape, packed=True, channels=channels)
    if fmt == CSR:
        return CSRTensor(shape, d["indptr"], d["indices"], _tensor(d["values"], rows=shape[0]),
                         index_bits=d.get("index_bits", 0))
    raise FormatError(f"tensor '{d['name']}': unknown storage format {fmt}")  # pragma: no cover - loader checks


def _from_def(d: dict) -> Model:
    vals = d["values"]
    name = [v["name"] for v in vals]
    inputs = [ValueInfo(name[i], vals[i]["shape"], vals[i]["dtype"]) for i in d["inputs"]]
    constants = {v["name"]: _tensor(d["tensors"][v["tensor"]]) for v in vals if v["tensor"] >= 0}
    nodes = [Node(n["op"], [name[i] for i in n["inputs"]], [name[i] for i in n["outputs"]], dict(n["attrs"]), n["name"])
             for n in d["nodes"]]
    m = Model(inputs=inputs, outputs=[name[i] for i in d["outputs"]], nodes=nodes, constants=constants,
              metadata=d["metadata"])
    return m

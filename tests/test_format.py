"""The .slim container: round trips of every storage format and of the graph through the
validating C++ loader, and rejection of damaged or hostile files with a message naming
what is wrong (truncations, bit flips, forged fields)."""
import os
import struct
import time
import zlib

import numpy as np
import pytest

import slimrt
from slimrt import formats as F
from slimrt import ir, slimfile
from slimrt._native import core
from slimrt.ir import Model

FormatError = slimrt.FormatError


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def fix_crcs(b: bytearray, layout) -> bytearray:
    """Recomputes every CRC (buffers, sections, then header) so a forged field reaches its own check."""
    for crc_off, ranges in layout["crcs"]:
        c = 0
        for s, e in ranges:
            c = zlib.crc32(bytes(b[s:e]), c)
        struct.pack_into("<I", b, crc_off, c)
    return b


def forge(model, patches=(), elems=(), crc=True):
    """The model's bytes with fields patched ({field: value}) and buffer elements patched
    ([(buffer key, dtype, index, value)]), CRCs recomputed."""
    data, lay = slimfile._dumps_with_layout(model)
    b = bytearray(data)
    for field, value in dict(patches).items():
        off, fmt = lay["fields"][field]
        struct.pack_into(fmt, b, off, value)
    for key, dtype, index, value in elems:
        off, _ = lay["fields"][key + ".data"]
        dt = np.dtype(dtype)
        b[off + index * dt.itemsize: off + (index + 1) * dt.itemsize] = np.array([value], dt).tobytes()
    if crc:
        fix_crcs(b, lay)
    return bytes(b)


def rejects(data, match):
    with pytest.raises(FormatError, match=match):
        core.load_model_def_bytes(data)


def rnd(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def same_tensor(a: F.Tensor, b: F.Tensor, nested=False):
    """Field-by-field equality of two stored tensors, and equal decoded values."""
    assert type(a) is type(b)
    assert a.shape == b.shape
    for x, y in zip(a.buffers(), b.buffers()):
        assert x.dtype == y.dtype and np.array_equal(np.ravel(x), np.ravel(y))
    for attr in ("axis", "bits", "channels", "index_bits"):
        assert getattr(a, attr, None) == getattr(b, attr, None), attr
    if isinstance(a, F.CSR):
        assert a.indptr.dtype == b.indptr.dtype and a.indices.dtype == b.indices.dtype
        same_tensor(a.values, b.values, nested=True)
    if isinstance(a, F.Codebook):
        assert a.lut.dtype == b.lut.dtype and a.lut.shape == b.lut.shape
    if nested and getattr(a, "axis", -1) >= 0:
        return  # per-row values decode through their CSR (checked by the caller)
    da, db = a.to_dense(), b.to_dense()
    assert da.dtype == db.dtype and np.array_equal(da, db, equal_nan=True)


def const_model(tensors: dict):
    """A model whose outputs are its constants (the loader checks each)."""
    m = Model(inputs=[("x", (None, 3))])
    names = [m.add_constant(k, v) for k, v in tensors.items()]
    m.outputs = ["x"] + names
    return m


def roundtrip(m: Model) -> Model:
    m2 = slimfile.loads(slimfile.dumps(m))
    assert list(m2.constants) == list(m.constants)
    for k in m.constants:
        same_tensor(m.constants[k], m2.constants[k])
    return m2


def small_model(rng):
    m = Model(inputs=[("x", (None, 6))], metadata={"k": "v"})
    h = m.add_node("dense", ["x", m.add_constant("w", rnd(rng, 4, 6)), m.add_constant("b", rnd(rng, 4))],
                   dict(act="relu"), name="fc")
    m.outputs = [m.add_node("softmax", [h], dict(axis=-1), name="sm")]
    return m


def all_formats_model(rng):
    """One constant of every storage format, with a node using some of them."""
    w = rnd(rng, 7, 9) * (rng.random((7, 9)) < 0.4)
    q = rng.integers(-127, 128, (7, 9))
    t = {
        "dense": F.Dense(rnd(rng, 3, 5)),
        "f16": F.Dense(rnd(rng, 4).astype(np.float16)),
        "i64": F.Dense(rng.integers(-9, 9, (2, 3)).astype(np.int64)),
        "int8pc": F.QInt8(q, rng.random(9).astype(np.float32), axis=1),
        "log2": F.Log2(rng.integers(0, 8, (5, 3)), rng.random(5).astype(np.float32) + 0.5, 4, axis=0),
        "cb": F.Codebook(rng.integers(0, 5, (6, 7)), rnd(rng, 5), 3),
        "csr": F.CSR.from_dense(w, lambda v, r: F.QInt8(np.clip(np.round(v * 40), -127, 127), np.full(7, 0.025, np.float32),
                                                         axis=0, shape=v.shape, channels=7)),
    }
    m = const_model(t)
    m.nodes.append(ir.Node("dense", ["x", "dense"], ["y"], {"act": "relu6"}, "fc"))
    m.outputs.append("y")
    m.metadata = {"source": "test", "json": '{"a": [1, 2]}'}
    return m


# ---------------------------------------------------------------------------
# schema and CRC: C++ and Python agree
# ---------------------------------------------------------------------------
def test_op_schema_equals_ir_ops():
    want = {op: (lo, hi, {k: (typ, default) for k, (typ, default) in attrs.items()})
            for op, (lo, hi, attrs) in ir.OPS.items()}
    got = core.op_schema()
    assert got == want
    # exact types of the defaults too (1e-3 vs 0.001 is equal; int vs float is not a kind match)
    for op, (_, _, attrs) in got.items():
        for k, (typ, default) in attrs.items():
            assert type(default) is type(ir.OPS[op][2][k][1]) or isinstance(default, list), (op, k)
    assert core.activations() == ir.ACTIVATIONS


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 63, 64, 65, 1000, 4099])
def test_crc32_matches_zlib(n):
    data = np.random.default_rng(n).integers(0, 256, n + 7, dtype=np.uint8).tobytes()
    for start in range(8):  # every alignment of the slicing-by-8 loop
        chunk = data[start:start + n]
        assert core.crc32(chunk) == zlib.crc32(chunk)
        cut = n // 3
        assert core.crc32(chunk[cut:], core.crc32(chunk[:cut])) == zlib.crc32(chunk)


def test_format_names_and_dtype_codes_agree(rng):
    d = core.load_model_def_bytes(slimfile.dumps(all_formats_model(rng)))
    by_name = {t["name"]: t for t in d["tensors"]}
    for name, t in all_formats_model(rng).constants.items():
        assert by_name[name]["format"] == t.format
        assert by_name[name]["format_name"] == F.FORMAT_NAMES[t.format]
    assert core.slim_format_version() == slimfile.VERSION


# ---------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16", "int8", "uint8", "int16", "uint16", "int32", "int64"])
@pytest.mark.parametrize("shape", [(), (1,), (0, 3), (3, 5, 7), (2, 1, 1, 1, 1, 1, 1, 2)])
def test_roundtrip_dense(rng, dtype, shape):
    a = (rng.standard_normal(shape) * 50).astype(dtype)
    roundtrip(const_model({"t": F.Dense(a)}))


@pytest.mark.parametrize("axis", [-1, 0, 1, 2])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 3, 2), (17, 4, 1)])
def test_roundtrip_int8(rng, axis, shape):
    q = rng.integers(-128, 128, shape)
    scale = rng.random(1 if axis < 0 else shape[axis]).astype(np.float32)
    roundtrip(const_model({"t": F.QInt8(q, scale, axis=axis)}))


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_roundtrip_log2(rng, bits, axis):
    shape = (5, 13)
    codes = rng.integers(0, 1 << bits, shape)
    codes[codes == 1 << (bits - 1)] = 0  # magnitude 0 with the sign bit is not a code
    scale = rng.random(1 if axis < 0 else shape[axis]).astype(np.float32) + 0.1
    roundtrip(const_model({"t": F.Log2(codes, scale, bits, axis=axis)}))


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("lut_dtype", ["float32", "int8"])
def test_roundtrip_codebook(rng, bits, axis, lut_dtype):
    shape = (3, 11)
    k = max(1, (1 << bits) - (bits % 3))  # full and partial codebooks
    groups = 1 if axis < 0 else shape[axis]
    lut = (rng.standard_normal((groups, k)) * 40).astype(lut_dtype)
    idx = rng.integers(0, k, shape)
    roundtrip(const_model({"t": F.Codebook(idx, lut, bits, axis=axis)}))


def _values(kind, v, rows, rng):
    if kind == "f32":
        return F.Dense(v.astype(np.float32))
    if kind == "f16":
        return F.Dense(v.astype(np.float16))
    if kind == "i8":
        return F.Dense(np.clip(np.round(v * 20), -128, 127).astype(np.int8))
    if kind == "int8":
        return F.QInt8(np.clip(np.round(v * 30), -127, 127), np.full(1, 0.03, np.float32), shape=v.shape)
    if kind == "int8_row":
        return F.QInt8(np.clip(np.round(v * 30), -127, 127), rng.random(rows).astype(np.float32), axis=0,
                       shape=v.shape, channels=rows)
    if kind == "log2_row":
        codes = (rng.integers(1, 8, v.shape) | (rng.integers(0, 2, v.shape) << 3)) * (rng.random(v.shape) < 0.8)
        return F.Log2(codes, rng.random(rows).astype(np.float32), 4, axis=0,
                      shape=v.shape, channels=rows)
    if kind == "cb":
        return F.Codebook(rng.integers(0, 3, v.shape), rnd(rng, 3), 2, shape=v.shape)
    if kind == "cb_row":
        return F.Codebook(rng.integers(0, 6, v.shape), rnd(rng, rows, 6), 3, axis=0, shape=v.shape, channels=rows)
    raise AssertionError(kind)


@pytest.mark.parametrize("values", ["f32", "f16", "i8", "int8", "int8_row", "log2_row", "cb", "cb_row"])
@pytest.mark.parametrize("indices", ["uint16", "int32"])
@pytest.mark.parametrize("indptr", ["int32", "int64"])
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_roundtrip_csr(rng, values, indices, indptr, density):
    rows, cols = 9, 13
    w = rnd(rng, rows, cols) * (rng.random((rows, cols)) < density)
    w[2] = 0  # an empty row
    mask = w != 0
    ip = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(indptr)
    r, c = np.nonzero(mask)
    t = F.CSR((rows, cols), ip, c.astype(indices), _values(values, w[r, c], rows, rng))
    m2 = roundtrip(const_model({"t": t}))
    assert m2.constants["t"].nnz == mask.sum()


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("cols", [1, 7, 300, 70000])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0])
def test_roundtrip_csr_relative_indices(rng, bits, cols, density):
    """Relative column codes (escapes for long gaps) decode to the same absolute indices."""
    rows = 5
    w = rnd(rng, rows, cols) * (rng.random((rows, cols)) < density)
    w[1] = 0                 # an empty row
    if cols > 1:
        w[3, :] = 0
        w[3, cols - 1] = 1.0  # one entry at the far end: the longest gap
    t = F.CSR.from_dense(w)
    rel = F.CSR(t.shape, t.indptr, t.indices, t.values, index_bits=bits)
    m2 = roundtrip(const_model({"t": rel}))
    back = m2.constants["t"]
    assert back.index_bits == bits and np.array_equal(back.indices.astype(np.int64), t.indices.astype(np.int64))
    assert back.indices.dtype == (np.uint16 if cols <= 65536 else np.int32)
    codes = F.relative_codes(t.indptr, t.indices, bits)
    assert rel.index_buffer().size == F.packed_size(codes.size, bits)


def test_best_index_bits_and_unsorted_rows():
    ip = np.array([0, 3], np.int32)
    assert F.best_index_bits(ip, np.array([0, 1, 2], np.uint16), 3) == 1        # adjacent: 1 bit each
    assert F.best_index_bits(ip, np.array([0, 2, 1], np.uint16), 3) == 0        # unsorted: absolute only
    with pytest.raises(FormatError, match="strictly increasing"):
        F.CSR((1, 3), ip, np.array([0, 2, 1], np.uint16), np.ones(3, np.float32), index_bits=2)


def test_roundtrip_graph(rng):
    """Attributes of every kind the schema has (int, float, str, ints), metadata, several inputs/outputs."""
    m = Model(inputs=[("img", (None, 8, 8, 3)), ("ids", (None, 5), "int32"), ("z", (2, 4), "float16")],
              metadata={"producer": "test", "empty": "", "unicode": "größe ✓"})
    c = m.add_node("conv2d", ["img", m.add_constant("k", rnd(rng, 4, 3, 3, 3)), m.add_constant("kb", rnd(rng, 4))],
                   dict(strides=[2, 2], dilations=(1, 1), pads=[1, 0, 1, 0], groups=1, act="leaky_relu", alpha=0.1))
    p = m.add_node("max_pool", [c], dict(kernel=[2, 2], strides=[1, 1], ceil_mode=1))
    t = m.add_node("transpose", [p], dict(perm=[0, 3, 1, 2]))
    r = m.add_node("reshape", [t], dict(shape=[0, -1]))
    e = m.add_node("embedding", ["ids", m.add_constant("table", rnd(rng, 10, 4))])
    ln = m.add_node("layer_norm", [e, m.add_constant("g", rnd(rng, 4))], dict(epsilon=1e-6))
    s = m.add_node("slice", [ln], dict(axes=[1], starts=[0], ends=[3]))
    pad = m.add_node("pad", [s], dict(pads=[0, 0, 0, 0, 1, 0], value=-1.5))
    m.outputs = [r, pad, "z", "table"]
    m2 = roundtrip(m)
    assert [(i.name, i.shape, i.dtype) for i in m2.inputs] == [(i.name, i.shape, i.dtype) for i in m.inputs]
    assert m2.outputs == m.outputs
    assert m2.metadata == m.metadata
    assert len(m2.nodes) == len(m.nodes)
    for a, b in zip(m.nodes, m2.nodes):
        assert (a.op, a.name, a.inputs, a.outputs) == (b.op, b.name, b.inputs, b.outputs)
        assert set(a.attrs) == set(b.attrs)
        for k, v in a.attrs.items():
            kind = ir.OPS[a.op][2][k][0]
            if kind in (ir.INTS, ir.FLOATS):
                assert list(b.attrs[k]) == list(v)
            else:
                assert b.attrs[k] == v and type(b.attrs[k]) is {ir.INT: int, ir.FLOAT: float, ir.STR: str}[kind]
    feeds = {"img": rnd(rng, 2, 8, 8, 3), "ids": rng.integers(0, 10, (2, 5)).astype(np.int32),
             "z": rnd(rng, 2, 4).astype(np.float16)}
    for x, y in zip(m.run_reference(feeds), m2.run_reference(feeds)):
        assert np.array_equal(x, y)


def test_layout_alignment(rng):
    data, lay = slimfile._dumps_with_layout(all_formats_model(rng))
    assert len(data) == lay["file_size"] and len(data) % 64 == 0
    assert data[:8] == slimfile.MAGIC
    bufs = [k for k in lay["fields"] if k.endswith(".data") and ".buffer[" in k]
    assert len(bufs) == 13
    for k in bufs:
        assert lay["fields"][k][0] % 64 == 0, k


def test_save_load_file(tmp_path, rng):
    m = all_formats_model(rng)
    p = tmp_path / "m.slim"
    assert slimfile.save(m, p) == str(p)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask  # a normal file, not mkstemp's private 0o600
    m2 = slimfile.load(p)
    for k in m.constants:
        same_tensor(m.constants[k], m2.constants[k])
    assert slimfile.dumps(m2) == p.read_bytes()  # canonical: load + dump reproduces the file
    assert slimrt.load(str(p)).metadata == m.metadata
    assert sorted(os.listdir(tmp_path)) == ["m.slim"]


def test_save_is_atomic(tmp_path, rng, monkeypatch):
    p = tmp_path / "m.slim"
    slimfile.save(small_model(rng), p)
    before = p.read_bytes()
    calls = []
    real = slimfile._emit

    def failing_emit(pieces, size, write):
        def w(data):
            calls.append(len(data))
            if len(calls) == 3:  # fail mid-way, after some bytes are on disk
                raise OSError("disk full (simulated)")
            write(data)
        real(pieces, size, w)

    monkeypatch.setattr(slimfile, "_emit", failing_emit)
    with pytest.raises(OSError, match="disk full"):
        slimfile.save(all_formats_model(rng), p)
    assert p.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["m.slim"]  # no temp file left
    # a new target: nothing at all is left behind
    q = tmp_path / "new.slim"
    calls.clear()
    with pytest.raises(OSError):
        slimfile.save(all_formats_model(rng), q)
    assert sorted(os.listdir(tmp_path)) == ["m.slim"]


def test_save_rejects_what_the_loader_rejects(tmp_path, rng):
    """A model that passes Model.validate but breaks a loader rule is never written."""
    m = small_model(rng)
    m.nodes[0].attrs["act"] = "relu"
    m.nodes.append(ir.Node("conv2d", ["x", "w"], ["c"], {"strides": [1, 1, 1]}, "c"))
    p = tmp_path / "bad.slim"
    with pytest.raises(FormatError, match="'strides' must have 2 values"):
        slimfile.save(m, p)
    assert os.listdir(tmp_path) == []


def test_io_errors(tmp_path):
    with pytest.raises(slimrt.Error, match="cannot open") as e:
        slimfile.load(tmp_path / "missing.slim")
    assert not isinstance(e.value, FormatError)
    with pytest.raises(slimrt.Error, match="not a regular file"):
        slimfile.load(tmp_path)
    (tmp_path / "empty.slim").write_bytes(b"")
    with pytest.raises(FormatError, match="too small"):
        slimfile.load(tmp_path / "empty.slim")


# ---------------------------------------------------------------------------
# damaged files
# ---------------------------------------------------------------------------
def test_every_truncation_rejected(rng, tmp_path):
    data = slimfile.dumps(small_model(rng))
    assert len(data) < 2048
    core.load_model_def_bytes(data)
    for n in range(len(data)):
        with pytest.raises(FormatError):
            core.load_model_def_bytes(data[:n])
    rejects(data[:100], "truncated")
    rejects(data[:-64], "truncated: header says")
    p = tmp_path / "t.slim"
    p.write_bytes(data[:-1])
    with pytest.raises(FormatError, match="t.slim.*truncated"):
        slimfile.load(p)


def test_trailing_bytes_rejected(rng):
    data = slimfile.dumps(small_model(rng))
    rejects(data + bytes(64), "trailing bytes")


def test_every_single_bit_flip_rejected_small(rng):
    """Exhaustive over a small file: every bit of every byte (header, tables, buffers, padding)."""
    data = slimfile.dumps(small_model(rng))
    b = bytearray(data)
    for i in range(len(b)):
        for bit in range(8):
            b[i] ^= 1 << bit
            with pytest.raises(FormatError):
                core.load_model_def_bytes(b)
            b[i] ^= 1 << bit


def test_random_bit_flips_rejected(rng):
    data = slimfile.dumps(all_formats_model(rng))
    r = np.random.default_rng(1234)
    for _ in range(400):
        b = bytearray(data)
        i = int(r.integers(len(b)))
        b[i] ^= 1 << int(r.integers(8))
        with pytest.raises(FormatError):
            core.load_model_def_bytes(bytes(b))


def test_corruption_names_the_culprit(rng):
    m = all_formats_model(rng)
    data, lay = slimfile._dumps_with_layout(m)

    def flip(field, delta=0):
        b = bytearray(data)
        b[lay["fields"][field][0] + delta] ^= 0x10
        return bytes(b)

    rejects(flip("tensor[cb].buffer[1].data"), r"tensor 'cb' buffer 'lut': CRC mismatch")
    rejects(flip("tensor[csr/values].buffer[1].data"), r"tensor 'csr' values buffer 'scale': CRC mismatch")
    rejects(flip("node[0].op"), r"graph section: CRC mismatch")
    rejects(flip("tensor[dense].dims[0]"), r"tensor table section: CRC mismatch")
    rejects(flip("header.file_size"), r"header: CRC mismatch")
    rejects(flip("section[data].offset"), r"header: CRC mismatch")
    pad = lay["fields"]["tensor[f16].buffer[0].data"][0] + 8  # after the 8 bytes of f16 data
    b = bytearray(data)
    b[pad] = 1
    rejects(bytes(b), r"non-zero padding byte at file offset %d" % pad)


# ---------------------------------------------------------------------------
# forged files: each reaches its own check (CRCs recomputed)
# ---------------------------------------------------------------------------
def test_forged_header(rng):
    m = small_model(rng)
    rejects(forge(m, {"header.magic": b"\x89SLIN\r\n\x1a"}), "bad magic")
    rejects(forge(m, {"header.version_major": 2}), r"version 2\.1 is newer than this reader \(1\.1\)")
    rejects(forge(m, {"header.version_major": 2, "header.version_minor": 0}), r"version 2\.0 is newer")
    rejects(forge(m, {"header.version_major": 0}), r"version 0\.1 is not supported")
    rejects(forge(m, {"header.header_size": 128}), "header size 128")
    rejects(forge(m, {"header.flags": 1}), "flags must be 0")
    rejects(forge(m, {"header.section_count": 2}), "section count 2")
    rejects(forge(m, {"header.section_count": 100000}), "section count 100000")
    rejects(forge(m, {"section[graph].kind": 9}), r"section 0 \(kind 9\): unknown section kind")
    rejects(forge(m, {"section[graph].kind": 2}), "tensor table section appears twice")
    # a newer minor may add section kinds: skipped by this reader
    core.load_model_def_bytes(forge(m, {"header.version_minor": 7}))
    rejects(forge(m, {"section[data].crc": 5}), "data section: crc field must be 0")


def test_forged_offsets(rng):
    m = small_model(rng)
    data, lay = slimfile._dumps_with_layout(m)
    n = len(data)
    rejects(forge(m, {"section[tensors].offset": n}), r"tensor table section: offset \d+ \+ size \d+ lies past the end")
    rejects(forge(m, {"section[graph].size": 2**64 - 1}), "graph section: offset .* lies past the end")
    rejects(forge(m, {"section[graph].offset": 200}), "graph section: offset 200 is not a multiple of 64")
    rejects(forge(m, {"section[graph].offset": 128}), "overlaps header and section table")
    rejects(forge(m, {"tensor[w].buffer[0].offset": n + 64}), r"tensor 'w' buffer 'data': offset \d+ .* outside the data section")
    rejects(forge(m, {"tensor[w].buffer[0].offset": 2**64 - 64}), r"tensor 'w' buffer 'data': .* outside the data section")
    off = lay["fields"]["tensor[b].buffer[0].offset"]
    rejects(forge(m, {"tensor[b].buffer[0].offset": struct.unpack_from("<Q", data, off[0])[0] + 4}),
            "not a multiple of 64")
    rejects(forge(m, {"tensor[b].buffer[0].offset": struct.unpack_from("<Q", data,
                                                                        lay["fields"]["tensor[w].buffer[0].offset"][0])[0]}),
            "overlaps")
    rejects(forge(m, {"tensor[w].buffer[0].size": 4}), r"tensor 'w' buffer 'data': 4 bytes, the dense format needs 96")


def test_forged_counts_fail_fast(rng):
    m = small_model(rng)
    for field, msg in [("nodes.count", "node count 4294967295 exceeds"),
                       ("values.count", "value count 4294967295 exceeds"),
                       ("tensors.count", "tensor count 4294967295 exceeds"),
                       ("inputs.count", "input count 4294967295 exceeds"),
                       ("node[0].inputs.count", "input count 4294967295 exceeds"),
                       ("node[0].attrs.count", "attribute count 4294967295 exceeds"),
                       ("node[1].attr[axis].name.len", "4294967295 bytes long"),
                       ("metadata[k].value.len", "4294967295 bytes long"),
                       ("metadata.count", "metadata count 4294967295 exceeds")]:
        t0 = time.perf_counter()
        rejects(forge(m, {field: 2**32 - 1}), msg)
        assert time.perf_counter() - t0 < 0.5, field
    rejects(forge(m, {"value[x].name.len": 5000}), "5000 bytes long, at most 4096")


def test_forged_shapes(rng):
    m = const_model({"t": F.Dense(rnd(rng, 3, 5)), "q": F.QInt8(rng.integers(-9, 9, (4, 6)), np.ones(6, np.float32), axis=1)})
    rejects(forge(m, {"tensor[t].dims[0]": 2**40, "tensor[t].dims[1]": 2**40}),
            r"tensor 't': shape \(1099511627776, 1099511627776\) element count overflows")
    rejects(forge(m, {"tensor[t].dims[0]": 2**62, "tensor[t].dims[1]": 1}),
            r"tensor 't': data byte count overflows")
    rejects(forge(m, {"tensor[t].dims[0]": -3}), r"tensor 't': negative dimension")
    rejects(forge(m, {"tensor[t].rank": 9}), r"tensor 't': rank 9 exceeds 8")
    rejects(forge(m, {"tensor[t].dims[0]": 4}), r"tensor 't' buffer 'data': 60 bytes, the dense format needs 80")
    rejects(forge(m, {"tensor[q].axis": 5}), r"tensor 'q': axis 5 out of range for shape \(4, 6\)")
    rejects(forge(m, {"tensor[q].axis": -2}), r"tensor 'q': axis -2 out of range")
    rejects(forge(m, {"tensor[q].axis": 0}), r"tensor 'q' buffer 'scale': 24 bytes, the int8 format needs 16")
    rejects(forge(m, {"tensor[t].axis": 0}), r"tensor 't': axis must be -1 for a dense tensor")
    rejects(forge(m, {"tensor[t].format": 9}), r"tensor 't': unknown storage format 9")
    rejects(forge(m, {"tensor[t].dtype": 0}), r"tensor 't': unknown dtype code 0")
    rejects(forge(m, {"tensor[q].dtype": 1}), r"tensor 'q': int8 tensor with dtype float32")
    rejects(forge(m, {"tensor[t].nnz": 3}), r"tensor 't': nnz must be 0 for a dense tensor")
    rejects(forge(m, {"tensor[t].n_buffers": 2}), r"tensor 't': 2 buffers, a dense tensor has 1")
    rejects(forge(m, {"tensor[q].buffer[1].reserved": 1}), "reserved field must be 0")
    rejects(forge(m, {"tensor[q].name": b"t"}), "tensor name 't' appears twice")
    rejects(forge(m, {"tensor[q].name": b"\xff"}), "not valid UTF-8")


def test_forged_log2_and_codebook(rng):
    m = const_model({
        "lg": F.Log2(rng.integers(1, 4, (3, 5)), np.ones(3, np.float32), 3, axis=0),
        "cb": F.Codebook(rng.integers(0, 3, (4, 5)), rnd(rng, 3), 2),
        "cbf": F.Codebook(rng.integers(0, 4, (3,)), rnd(rng, 4), 2),
    })
    rejects(forge(m, {"tensor[lg].bits": 9}), r"tensor 'lg': log2 code width 9 outside 2\.\.8")
    rejects(forge(m, {"tensor[lg].bits": 1}), r"tensor 'lg': log2 code width 1 outside 2\.\.8")
    rejects(forge(m, elems=[("tensor[lg].buffer[0]", "uint8", 0, 0b100)]),
            r"tensor 'lg': log2 code 4 at element 0 has magnitude 0")
    rejects(forge(m, elems=[("tensor[cb].buffer[0]", "uint8", 1, 0b11 << 4)]),
            r"tensor 'cb': codebook index 3 at element 6 >= lut size 3")
    rejects(forge(m, {"tensor[cb].bits": 1}), r"tensor 'cb': lut size 3 outside 1\.\.2\^1 \(2\)")
    rejects(forge(m, {"tensor[cb].lut_size": 5}), r"lut size 5 outside 1\.\.2\^2")
    rejects(forge(m, {"tensor[cb].lut_size": 0}), r"lut size 0 outside")
    rejects(forge(m, {"tensor[cb].lut_groups": 2}), r"tensor 'cb': lut groups 2, expected 1")
    rejects(forge(m, {"tensor[cb].lut_dtype": 8}), r"lut dtype code 8 is not float32 or int8")
    # 3 codes of 2 bits use 6 bits of the byte; the last 2 must be zero
    rejects(forge(m, elems=[("tensor[cbf].buffer[0]", "uint8", 0, 0b11000000)]),
            r"tensor 'cbf': unused bits after the last codebook index must be 0")


def test_forged_csr(rng):
    w = rnd(rng, 4, 7) * (rng.random((4, 7)) < 0.5)
    w[0, 1] = w[1, 2] = w[3, 6] = 1.0  # at least 3 non-zeros, one in the last row
    t = F.CSR.from_dense(w)
    nnz = t.nnz
    m = const_model({"fc1.w": F.CSR(t.shape, t.indptr.astype(np.int32), t.indices.astype(np.int32), t.values)})
    ip, ix = "tensor[fc1.w].buffer[0]", "tensor[fc1.w].buffer[1]"
    rejects(forge(m, elems=[(ix, "int32", nnz - 1, 812)]),
            r"tensor 'fc1.w': CSR column index 812 out of range \[0, 7\)")
    rejects(forge(m, elems=[(ix, "int32", 0, -1)]), r"CSR column index -1 out of range \[0, 7\)")
    rejects(forge(m, elems=[(ip, "int32", 0, 1)]), r"tensor 'fc1.w': CSR indptr\[0\] is 1, must be 0")
    rejects(forge(m, elems=[(ip, "int32", 2, 0), (ip, "int32", 1, 2)]), r"CSR indptr decreases at row 1")
    rejects(forge(m, elems=[(ip, "int32", 4, nnz - 1)]), r"CSR indptr\[4\] is %d, must equal nnz %d" % (nnz - 1, nnz))
    rejects(forge(m, {"tensor[fc1.w].rank": 1}), r"CSR tensors are 2-D")
    rejects(forge(m, {"tensor[fc1.w].indptr_dtype": 6}), r"indptr dtype code 6 is not int32 or int64")
    rejects(forge(m, {"tensor[fc1.w].indices_dtype": 8}), r"indices dtype code 8 is not uint16 or int32")
    rejects(forge(m, {"tensor[fc1.w/values].dims[0]": nnz + 1}), r"values: shape \(%d,\), expected \(%d,\)" % (nnz + 1, nnz))
    rejects(forge(m, {"tensor[fc1.w/values].format": 4}), r"CSR values cannot themselves be CSR")
    rejects(forge(m, {"tensor[fc1.w/values].dtype": 7}), r"dense CSR values must be float32, float16 or int8")


def test_forged_relative_csr():
    # 4 x 7, rows: {1, 2}, {}, {0, 6}, {3}; 3-bit codes (escape 7): 1 0 | 0 5 | 3 -> 5 codes, 15 bits
    w = np.zeros((4, 7), np.float32)
    w[0, 1] = w[0, 2] = w[2, 0] = w[2, 6] = w[3, 3] = 1.0
    t = F.CSR.from_dense(w)
    m = const_model({"r": F.CSR(t.shape, t.indptr.astype(np.int32), t.indices, t.values, index_bits=3)})
    ix = "tensor[r].buffer[1]"
    assert np.array_equal(F.relative_codes(t.indptr, t.indices, 3), [1, 0, 0, 5, 3])
    assert slimfile.loads(forge(m)).constants["r"].to_dense().tolist() == w.tolist()
    rejects(forge(m, {"tensor[r].bits": 9}), r"tensor 'r': relative CSR index width 9 is outside 1..8")
    rejects(forge(m, {"tensor[r].indices_dtype": 6}), r"relative CSR indices must have dtype code 4 \(uint8\)")
    # codes 1 0 -> 6 0: row 0 reaches column 6, its second entry passes it
    rejects(forge(m, elems=[(ix, "uint8", 0, 0b000110)]), r"relative CSR index of row 0 passes the last column 6")
    # all escapes: the stream runs out before row 3's entry
    rejects(forge(m, elems=[(ix, "uint8", 0, 0xFF), (ix, "uint8", 1, 0x7F)]),
            r"relative CSR index of row 0 passes the last column|relative CSR indices end before the entries")
    # the 16th bit (unused) set
    packed = F.pack_bits(F.relative_codes(t.indptr, t.indices, 3), 3)
    rejects(forge(m, elems=[(ix, "uint8", 1, int(packed[1]) | 0x80)]),
            r"tensor 'r': unused bits after the last relative CSR index must be 0")
    # a row count that asks for more entries than the codes hold
    rejects(forge(m, {"tensor[r].nnz": 9, "tensor[r/values].dims[0]": 9},
                  elems=[("tensor[r].buffer[0]", "int32", 4, 9)]),
            r"tensor 'r' buffer 'indices': 2 bytes, relative indices of 9 entries need 4\.\.")


def test_forged_graph(rng):
    m = Model(inputs=[("x", (None, 6))])
    h1 = m.add_node("dense", ["x", m.add_constant("w", rnd(rng, 6, 6))], dict(act="relu"), name="h1")
    h2 = m.add_node("dense", [h1, "w"], dict(act="none", alpha=0.5), name="h2")
    c = m.add_node("conv2d", [m.add_node("reshape", [h2], dict(shape=[-1, 1, 2, 3]), name="r"),
                              m.add_constant("k", rnd(rng, 2, 1, 1, 3))],
                   dict(strides=[1, 1], pads=[0, 0, 0, 0], groups=1), name="c")
    t = m.add_node("transpose", [c], dict(perm=[0, 2, 1, 3]), name="t")
    m.outputs = [m.add_node("batch_norm", [t] + [m.add_constant(n, rnd(rng, 2)) for n in "gbmv"],
                            dict(epsilon=1e-3), name="bn")]
    m.validate()
    core.load_model_def_bytes(slimfile.dumps(m))
    ids = {name: i for i, name in enumerate(v["name"] for v in core.load_model_def_bytes(slimfile.dumps(m))["values"])}
    rejects(forge(m, {"node[0].input[1]": 99}), r"node 0 'h1' \(dense\) input 1 refers to value id 99, out of range \[0, \d+\)")
    rejects(forge(m, {"node[0].input[0]": -1}), r"refers to value id -1")
    rejects(forge(m, {"output[0]": 1000}), r"graph output 0 refers to value id 1000")
    rejects(forge(m, {"node[0].input[0]": ids["h2"]}), r"node 0 'h1' \(dense\): input 0 reads value 'h2' before it is defined")
    rejects(forge(m, {"node[1].output[0]": ids["h1"]}), r"node 1 'h2' \(dense\): output value 'h1' is defined twice")
    rejects(forge(m, {"node[1].output[0]": ids["x"]}), r"output value 'x' is defined twice")
    rejects(forge(m, {"input[0]": ids["w"]}), r"graph input 0: value 'w' is a constant")
    rejects(forge(m, {"node[0].op": b"dunce"}), r"node 0 'h1' \(dunce\): unknown op 'dunce'")
    rejects(forge(m, {"node[0].inputs.count": 1, "node[0].input[0]": 0}), r"node 0 'h1' \(dense\): 1 inputs, expected 2\.\.4")
    rejects(forge(m, {"node[0].attr[act].kind": 1}), r"node 0 'h1' \(dense\): attribute 'act' must be str, got int")
    rejects(forge(m, {"node[0].attr[act].kind": 6}), r"attribute 'act': unknown attribute kind 6")
    rejects(forge(m, {"node[0].attr[act].name": b"bct"}), r"node 0 'h1' \(dense\): unknown attribute 'bct'")
    rejects(forge(m, {"node[0].attr[act]": b"relx"}), r"attribute 'act' names unknown activation 'relx'")
    rejects(forge(m, {"node[1].attr[alpha]": float("nan")}), r"attribute 'alpha' is NaN")
    rejects(forge(m, {"node[1].attr[alpha]": float("inf")}), r"attribute 'alpha' must be finite")
    rejects(forge(m, {"node[3].attr[strides][1]": 0}), r"node 3 'c' \(conv2d\): attribute 'strides' must be >= 1, got \[1, 0\]")
    rejects(forge(m, {"node[3].attr[pads][2]": -1}), r"attribute 'pads' must be >= 0, got \[0, 0, -1, 0\]")
    rejects(forge(m, {"node[3].attr[groups]": 0}), r"attribute 'groups' must be >= 1, got 0")
    rejects(forge(m, {"node[4].attr[perm][1]": 1}), r"node 4 't' \(transpose\): attribute 'perm' is not a permutation: \[0, 1, 1, 3\]")
    rejects(forge(m, {"node[4].attr[perm][1]": 7}), r"'perm' is not a permutation")
    rejects(forge(m, {"node[2].attr[shape][1]": -1}), r"attribute 'shape' has more than one -1")
    rejects(forge(m, {"node[2].attr[shape][1]": -5}), r"attribute 'shape' has a dimension < -1")
    rejects(forge(m, {"node[5].attr[epsilon]": -1.0}), r"attribute 'epsilon' must be finite and >= 0")
    rejects(forge(m, {"node[5].op": b"batch_nurm"}), r"unknown op 'batch_nurm'")
    rejects(forge(m, {"value[w].dtype": 7}), r"value 'w': dtype int32 does not match its tensor 'w' \(float32\)")
    rejects(forge(m, {"value[w].tensor": 50}), r"value 'w': tensor index 50 out of range \[-1, 6\)")
    rejects(forge(m, {"value[w].name": b"x"}), r"value name 'x' appears twice")
    rejects(forge(m, {"value[x].dims[0]": -2}), r"value 'x': dimension -2 < -1")
    rejects(forge(m, {"value[x].reserved": 3}), r"value 'x': reserved field must be 0")
    rejects(forge(m, {"node[0].outputs.count": 2}), r"node 0 'h1' \(dense\): 2 outputs, expected 1")


def test_forged_attribute_lengths(rng):
    """Attribute lists of the wrong length (written through the Python writer, which only checks types)."""
    def conv(**attrs):
        m = Model(inputs=[("x", (1, 4, 4, 2))])
        m.outputs = [m.add_node("conv2d", ["x", m.add_constant("k", rnd(rng, 2, 1, 1, 2))], attrs, name="c")]
        return slimfile.dumps(m)

    rejects(conv(strides=[1]), r"node 0 'c' \(conv2d\): attribute 'strides' must have 2 values, got \[1\]")
    rejects(conv(dilations=[1, 1, 1]), r"attribute 'dilations' must have 2 values")
    rejects(conv(pads=[1, 1]), r"attribute 'pads' must have 4 values")
    m = Model(inputs=[("x", (1, 4, 4, 2))])
    m.outputs = [m.add_node("max_pool", ["x"], dict(kernel=[2, 0]), name="p")]
    rejects(slimfile.dumps(m), r"attribute 'kernel' must be >= 1")
    m = Model(inputs=[("x", (1, 4))])
    m.outputs = [m.add_node("pad", ["x"], dict(pads=[1, 1, 1]), name="p")]
    rejects(slimfile.dumps(m), r"attribute 'pads' must have an even length")
    m = Model(inputs=[("x", (1, 4))])
    m.outputs = [m.add_node("slice", ["x"], dict(axes=[1], starts=[0]), name="s")]
    rejects(slimfile.dumps(m), r"'axes', 'starts', 'ends' must have equal lengths, got 1, 1, 0")
    m = Model(inputs=[("x", (1, 4))])
    m.outputs = [m.add_node("softmax", ["x"], dict(axis=-1), name="s")]
    m.nodes[0].attrs["axis"] = -1
    data, lay = slimfile._dumps_with_layout(m)
    b = bytearray(data)
    struct.pack_into("<B", b, lay["fields"]["node[0].attr[axis].kind"][0], 5)  # floats with the int's 8 bytes as count
    rejects(bytes(fix_crcs(b, lay)), r"attribute 'axis' must be int, got floats")


def test_corrupt_buffer_named_in_large_model(rng):
    """Above 4 MiB the buffer CRCs run on the thread pool; the culprit is still named."""
    t = {f"w{i}": rnd(rng, 512, 512) for i in range(6)}  # 6 MiB
    m = const_model(t)
    data, lay = slimfile._dumps_with_layout(m)
    assert len(slimfile.loads(data).constants) == 6
    b = bytearray(data)
    b[lay["fields"]["tensor[w4].buffer[0].data"][0] + 777] ^= 4
    rejects(bytes(b), r"tensor 'w4' buffer 'data': CRC mismatch")

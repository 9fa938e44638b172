"""Reading Keras model files without Keras or TensorFlow: only zipfile, json and h5py.

Two containers are understood:

* ``.keras`` (Keras 3): a zip with ``config.json``, ``metadata.json`` and ``model.weights.h5``.
  In the weights file a model's layers live under ``<model>/layers/<snake_case_class>[_<n>]``
  (``n`` counts layers of the same class in the model's layer order, starting at 1 for the
  second one), each layer's variables under ``<layer>/vars/<i>`` in the order
  ``trainable + non_trainable`` the layer created them.
* legacy ``.h5`` (``model.save("x.h5")``, tf.keras 2 and Keras 3): the config is the
  ``model_config`` attribute; weights are under ``model_weights/<layer name>``, listed in the
  group's ``weight_names`` attribute (paths relative to that group, e.g. the doubled
  ``conv2d_1/kernel:0`` -> dataset ``model_weights/conv2d_1/conv2d_1/kernel:0``). A nested
  model's group lists the weights of all its layers, named ``[<model>/]<layer>/<var>``.

Nothing here executes anything from the file. Every size read from the file is checked
before memory is allocated for it: the config has a byte limit, and a weight is only read
after its stored shape was compared with the shape the importer derived from the config
and its byte size with the size of the file.
"""
from __future__ import annotations

import io
import json
import os
import re
import struct
import tempfile
import zipfile
import zlib

import numpy as np

from ..errors import FormatError

MAX_CONFIG_BYTES = 64 << 20  # config.json / model_config: no real model comes close
MAX_JSON_DEPTH = 200  # nesting of the config's JSON (lists/dicts), checked after parsing
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


def _load_json(raw: bytes, what: str):
    if len(raw) > MAX_CONFIG_BYTES:
        raise FormatError(f"{what} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
        obj = json.loads(text)
    except RecursionError:
        raise FormatError(f"{what} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"{what} is not valid JSON: {e}") from None
    _check_depth(obj, what)
    return obj


def _check_depth(obj, what):
    """Iterative depth check so that later (recursive) walks of the config are bounded."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > MAX_JSON_DEPTH:
            raise FormatError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)


class _Window(io.RawIOBase):
    """A read-only, seekable view of bytes [start, start+size) of an open file."""

    def __init__(self, f, start, size):
        super().__init__()
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, off, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        pos = base + off
        if pos < 0:
            raise OSError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, b):
        n = max(0, min(len(b), self._size - self._pos))
        if n == 0:
            return 0
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        b[:len(data)] = data
        self._pos += len(data)
        return len(data)


class KerasFile:
    """An opened Keras model file: ``config`` (dict), ``keras_version`` (str) and ``weights``."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._closers = []
        self.config = None
        self.keras_version = ""
        self.kind = None  # "keras" or "h5"
        self.weights = None  # a V3Scope or LegacyScope for the top-level model
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # ---- container detection ----
    def _open(self):
        if os.path.isdir(self.path):
            raise FormatError(f"'{self.path}' is a directory (TensorFlow SavedModel directories are not "
                              "Keras model files; save the model as .keras or .h5)")
        with open(self.path, "rb") as f:
            head = f.read(8)
        if head.startswith(_ZIP_MAGIC):
            self._open_keras_zip()
        elif head == _HDF5_MAGIC or self._is_hdf5_with_userblock():
            self._open_legacy_h5()
        elif zipfile.is_zipfile(self.path):
            self._open_keras_zip()
        else:
            raise FormatError(f"'{self.path}' is not a Keras model file (neither a .keras zip nor an HDF5 .h5)")

    def _is_hdf5_with_userblock(self):
        # HDF5 allows a user block of 512 * 2^k bytes before the superblock
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            off = 512
            while off + 8 <= size and off <= (1 << 20):
                f.seek(off)
                if f.read(8) == _HDF5_MAGIC:
                    return True
                off *= 2
        return False

    def close(self):
        for c in reversed(self._closers):
            try:
                c.close()
            except Exception:
                pass
        self._closers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- .keras (v3 zip) ----
    def _open_keras_zip(self):
        self.kind = "keras"
        try:
            zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
            raise FormatError(f"'{self.path}': damaged .keras zip: {e}") from None
        self._closers.append(zf)
        names = set(zf.namelist())
        if "config.json" not in names:
            raise FormatError(f"'{self.path}': zip without config.json is not a .keras model")
        self.config = _load_json(self._read_member(zf, "config.json"), "config.json")
        if "metadata.json" in names:
            meta = _load_json(self._read_member(zf, "metadata.json"), "metadata.json")
            if isinstance(meta, dict) and isinstance(meta.get("keras_version"), str):
                self.keras_version = meta["keras_version"]
        if "model.weights.h5" not in names:
            if "model.weights.json" in names or any(n.endswith(".weights.h5") for n in names):
                raise FormatError(f"'{self.path}': sharded weights are not supported; save the model unsharded")
            if "model.weights.npz" in names:
                raise FormatError(f"'{self.path}': .npz weight stores are not supported")
            raise FormatError(f"'{self.path}': the .keras zip has no model.weights.h5")
        h5 = self._open_h5_member(zf, "model.weights.h5")
        self.weights = V3Scope(h5, "", self._weights_size)

    def _read_member(self, zf, name):
        info = zf.getinfo(name)
        if info.file_size > MAX_CONFIG_BYTES:
            raise FormatError(f"{name} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
        try:
            with zf.open(info) as m:
                data = m.read(MAX_CONFIG_BYTES + 1)  # reading to the end checks the CRC
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as e:
            raise FormatError(f"'{self.path}': damaged member {name}: {e}") from None
        return data

    def _open_h5_member(self, zf, name):
        import h5py

        info = zf.getinfo(name)
        self._weights_size = info.file_size
        if info.compress_type == zipfile.ZIP_STORED:
            raw = open(self.path, "rb")
            self._closers.append(raw)
            raw.seek(info.header_offset)
            hdr = raw.read(30)
            if len(hdr) != 30 or hdr[:4] != _ZIP_MAGIC:
                raise FormatError(f"'{self.path}': damaged zip local header of {name}")
            nlen, xlen = struct.unpack("<HH", hdr[26:30])
            start = info.header_offset + 30 + nlen + xlen
            if start + info.file_size > os.path.getsize(self.path) or info.compress_size != info.file_size:
                raise FormatError(f"'{self.path}': {name} extends past the end of the zip (truncated?)")
            crc = 0
            raw.seek(start)
            left = info.file_size
            while left:
                chunk = raw.read(min(left, 1 << 22))
                if not chunk:
                    raise FormatError(f"'{self.path}': {name} is truncated")
                crc = zlib.crc32(chunk, crc)
                left -= len(chunk)
            if crc != info.CRC:
                raise FormatError(f"'{self.path}': {name} fails its CRC check (damaged file)")
            fobj = _Window(raw, start, info.file_size)
        else:
            # compressed member: inflate to a temporary file, never past the declared size
            tmp = tempfile.TemporaryFile()
            self._closers.append(tmp)
            try:
                with zf.open(info) as m:
                    left = info.file_size
                    while True:
                        chunk = m.read(1 << 22)
                        if not chunk:
                            break
                        left -= len(chunk)
                        if left < 0:
                            raise FormatError(f"'{self.path}': {name} inflates past its declared size")
                        tmp.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as e:
                raise FormatError(f"'{self.path}': damaged member {name}: {e}") from None
            tmp.seek(0)
            fobj = tmp
        self._closers.append(fobj)
        try:
            h5 = h5py.File(fobj, "r")
        except Exception as e:  # h5py raises OSError/ValueError/KeyError on damaged files
            raise FormatError(f"'{self.path}': {name} is not a readable HDF5 file: {e}") from None
        self._closers.append(h5)
        return h5

    # ---- legacy .h5 ----
    def _open_legacy_h5(self):
        import h5py

        self.kind = "h5"
        self._weights_size = os.path.getsize(self.path)
        try:
            h5 = h5py.File(self.path, "r")
        except Exception as e:
            raise FormatError(f"'{self.path}': damaged HDF5 file: {e}") from None
        self._closers.append(h5)
        try:
            attrs = h5.attrs
            if "model_config" not in attrs:
                if "layer_names" in attrs or "weight_names" in attrs:
                    raise FormatError(f"'{self.path}' holds only weights (save_weights); a full model file "
                                      "(model.save) with its config is needed")
                raise FormatError(f"'{self.path}' is an HDF5 file but not a Keras model (no model_config)")
            raw = attrs["model_config"]
            kv = attrs.get("keras_version", b"")
        except FormatError:
            raise
        except Exception as e:
            raise FormatError(f"'{self.path}': damaged HDF5 attributes: {e}") from None
        self.config = _load_json(_as_bytes(raw, "model_config"), "model_config")
        try:
            self.keras_version = _as_bytes(kv, "keras_version").decode("utf-8", "replace")
        except FormatError:
            self.keras_version = ""
        mw = _hard_child(h5, "model_weights", "group")
        if mw is None:
            raise FormatError(f"'{self.path}': the model file has no model_weights group")
        self.weights = LegacyScope.top(mw, self._weights_size)


def _as_bytes(v, what):
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape")  # undecodable bytes come back and fail the JSON parse
    if isinstance(v, np.ndarray) and v.shape == () and isinstance(v.item(), (bytes, str)):
        return _as_bytes(v.item(), what)
    raise FormatError(f"attribute {what} is not a string")


def _hard_child(parent, name, kind):
    """parent[name] if it exists as a hard link of the given kind ('group' | 'dataset'), else None."""
    import h5py

    try:
        link = parent.get(name, getlink=True)
    except Exception as e:
        raise FormatError(f"damaged HDF5 entry '{name}': {e}") from None
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise FormatError(f"HDF5 entry '{name}' is a {type(link).__name__}; only entries stored in the file "
                          "itself are read")
    try:
        obj = parent[name]
    except Exception as e:
        raise FormatError(f"damaged HDF5 entry '{name}': {e}") from None
    if kind == "group" and not isinstance(obj, h5py.Group):
        raise FormatError(f"HDF5 entry '{name}' should be a group")
    if kind == "dataset" and not isinstance(obj, h5py.Dataset):
        raise FormatError(f"HDF5 entry '{name}' should be a dataset")
    return obj


# ---- weight access ----

def snake_case(name: str) -> str:
    """Keras' ``to_snake_case``: how a class name becomes a weights-file path (``PReLU`` -> ``p_re_lu``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class Var:
    """One stored variable, not yet read: ``name`` (legacy files only, else None) and its dataset."""

    def __init__(self, name, ds, where, file_size):
        self.name, self.ds, self.where, self._file_size = name, ds, where, file_size

    @property
    def shape(self):
        try:
            return tuple(int(d) for d in self.ds.shape)
        except Exception as e:
            raise FormatError(f"{self.where}: damaged dataset: {e}") from None

    def read(self, expected_shape, what):
        """The variable as float32 after checking its shape against ``expected_shape``."""
        shape = self.shape
        if tuple(shape) != tuple(expected_shape):
            raise FormatError(f"{what}: stored shape {shape} does not match the config's {tuple(expected_shape)} "
                              f"({self.where})")
        ds = self.ds
        try:
            dt = ds.dtype
            if dt.kind not in "fiu":
                raise FormatError(f"{what}: stored dtype {dt} is not numeric ({self.where})")
            if ds.is_virtual or ds.external:
                raise FormatError(f"{what}: dataset refers to data outside the file ({self.where})")
            nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
            filtered = bool(ds.compression) or ds.chunks is not None and bool(ds.id.get_create_plist().get_nfilters())
            limit = self._file_size * (1024 if filtered else 1) + 4096
            if nbytes > limit:
                raise FormatError(f"{what}: {nbytes} bytes of data cannot be stored in a {self._file_size}-byte "
                                  f"file ({self.where})")
            arr = np.asarray(ds[()])
        except FormatError:
            raise
        except Exception as e:
            raise FormatError(f"{what}: cannot read {self.where}: {e}") from None
        return np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)


class V3Scope:
    """The weights of one model or layer inside a Keras 3 ``model.weights.h5``."""

    def __init__(self, h5, path, file_size):
        self._h5, self.path, self._file_size = h5, path, file_size

    def _group(self, path):
        g = self._h5
        for part in [p for p in path.split("/") if p]:
            g = _hard_child(g, part, "group")
            if g is None:
                return None
        return g

    def sub_scopes(self, layer_classes):
        """Scopes of a model's layers: ``layer_classes`` is [(name, class_name)] in the model's layer order."""
        used = {}
        out = {}
        for name, cls in layer_classes:
            base = snake_case(cls)
            if base in used:
                used[base] += 1
                key = f"{base}_{used[base]}"
            else:
                used[base] = 0
                key = base
            out[name] = V3Scope(self._h5, f"{self.path}/layers/{key}".lstrip("/"), self._file_size)
        return out

    def vars(self):
        g = self._group(f"{self.path}/vars")
        if g is None:
            return []
        try:
            keys = list(g.keys())
        except Exception as e:
            raise FormatError(f"damaged weights group {self.path}/vars: {e}") from None
        idx = []
        for k in keys:
            if not (k.isdigit() and len(k) < 10):
                raise FormatError(f"unexpected entry '{k}' in weights group {self.path}/vars")
            idx.append(int(k))
        idx.sort()
        if idx != list(range(len(idx))):
            raise FormatError(f"weights group {self.path}/vars is missing variables (has {idx})")
        out = []
        for i in idx:
            ds = _hard_child(g, str(i), "dataset")
            out.append(Var(None, ds, f"{self.path}/vars/{i}", self._file_size))
        return out

    def child(self, name):
        """The scope of a sublayer (MultiHeadAttention's projections)."""
        return V3Scope(self._h5, f"{self.path}/{name}", self._file_size)

    def stored_name(self):
        """The layer name Keras >= 3.? writes as an attribute of the vars group (or None)."""
        g = self._group(f"{self.path}/vars")
        if g is None:
            return None
        try:
            v = g.attrs.get("name")
        except Exception:
            return None
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        return v if isinstance(v, str) else None


class LegacyScope:
    """The weights of one model or layer in a legacy ``.h5``: (path parts, dataset) pairs in stored order."""

    def __init__(self, entries, where, file_size, root=None):
        self._entries, self.path, self._file_size, self._root = entries, where, file_size, root

    @classmethod
    def top(cls, model_weights, file_size):
        return cls(None, "model_weights", file_size, root=model_weights)

    def _layer_entries(self, name):
        g = _hard_child(self._root, name, "group")
        if g is None:
            return []
        try:
            wn = g.attrs.get("weight_names")
        except Exception as e:
            raise FormatError(f"damaged attributes of model_weights/{name}: {e}") from None
        if wn is None:
            return []
        wn = np.asarray(wn)
        if wn.size == 0:
            return []
        if wn.ndim != 1 or wn.dtype.kind not in "SOU":
            raise FormatError(f"model_weights/{name}: weight_names is not a list of strings")
        out = []
        for w in wn.tolist():
            w = w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w)
            ds = g
            for part in w.split("/"):
                if not part:
                    continue
                ds = _hard_child(ds, part, "any")
                if ds is None:
                    raise FormatError(f"model_weights/{name} lists weight '{w}' that is not in the file")
            import h5py

            if not isinstance(ds, h5py.Dataset):
                raise FormatError(f"model_weights/{name}/{w} is not a dataset")
            parts = [p for p in w.split("/") if p]
            if len(parts) > 1 and parts[0] == name:
                parts = parts[1:]  # Keras 3 prefixes the layer's own name
            out.append((parts, Var(w, ds, f"model_weights/{name}/{w}", self._file_size)))
        return out

    def sub_scopes(self, layer_classes):
        out = {}
        for name, _cls in layer_classes:
            if self._root is not None:
                entries = self._layer_entries(name)
            else:
                entries = [(p[1:], v) for p, v in self._entries if len(p) > 1 and p[0] == name]
            out[name] = LegacyScope(entries, f"{self.path}/{name}", self._file_size)
        return out

    def vars(self):
        if self._entries is None:
            return []
        return [v for _p, v in self._entries]

    def child(self, name):
        """The scope of a sublayer: the weights named <name>/... (MultiHeadAttention's 'query/kernel')."""
        entries = [(p[1:], v) for p, v in (self._entries or []) if len(p) > 1 and p[0] == name]
        return LegacyScope(entries, f"{self.path}/{name}", self._file_size)

    def stored_name(self):
        return None

    def unclaimed(self, names):
        """Weight names of a nested model that belong to none of its layers ``names``."""
        if self._entries is None:
            return []
        return ["/".join(p) for p, _v in self._entries if len(p) < 2 or p[0] not in names]

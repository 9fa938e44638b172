// Python glue of the .slim loader: the validated ModelDef as plain dicts and
// numpy copies (python/slimrt/slimfile.py rebuilds a Model from them, so the
// C++ loader is the only parser), the op schema, and the CRC.
#include <cstring>

#include "core/common.h"
#include "format/crc32.h"
#include "format/model_def.h"
#include "format/schema.h"
#include "format/slim_format.h"
#include "python/bind.h"

namespace slimrt::py {
namespace {

pyb::object attr_to_py(const AttrValue& v) {
  switch (v.kind) {
    case AttrValue::Int: return pyb::int_(v.i);
    case AttrValue::Float: return pyb::float_(v.f);
    case AttrValue::Str: return pyb::str(v.s);
    case AttrValue::Ints: return pyb::cast(v.ints);
    case AttrValue::Floats: return pyb::cast(v.floats);
  }
  return pyb::none();
}

pyb::array copy_array(const Bytes& b, DType dt, std::vector<int64_t> shape) {
  std::vector<pyb::ssize_t> s(shape.begin(), shape.end());
  pyb::array a(pyb::dtype(dtype_name(dt)), s);
  if (b.size) std::memcpy(a.mutable_data(), b.data, b.size);
  return a;
}

pyb::dict tensor_to_py(const TensorDef& t) {
  pyb::dict d;
  d["name"] = t.name;
  d["format"] = static_cast<int>(t.format);
  d["format_name"] = tformat_name(t.format);
  d["dtype"] = dtype_name(t.dtype);
  d["shape"] = pyb::tuple(pyb::cast(t.shape));
  d["axis"] = t.axis;
  d["bits"] = t.bits;
  d["channels"] = t.channels;
  switch (t.format) {
    case TFormat::Dense: d["data"] = copy_array(t.data, t.dtype, t.shape); break;
    case TFormat::Int8:
      d["q"] = copy_array(t.data, DType::I8, {t.numel});
      d["scale"] = copy_array(t.scale, DType::F32, {t.channels});
      break;
    case TFormat::Log2:
      d["codes"] = copy_array(t.data, DType::U8, {static_cast<int64_t>(t.data.size)});
      d["scale"] = copy_array(t.scale, DType::F32, {t.channels});
      break;
    case TFormat::Codebook:
      d["codes"] = copy_array(t.data, DType::U8, {static_cast<int64_t>(t.data.size)});
      d["lut"] = copy_array(t.lut, t.lut_dtype, {t.lut_groups, t.lut_size});
      d["lut_groups"] = t.lut_groups;
      d["lut_size"] = t.lut_size;
      break;
    case TFormat::Csr:
      d["nnz"] = t.nnz;
      d["indptr"] = copy_array(t.indptr, t.indptr_dtype, {t.shape[0] + 1});
      d["indices"] = copy_array(t.indices, t.indices_dtype, {t.nnz});
      d["index_bits"] = t.index_bits;
      d["values"] = tensor_to_py(*t.values);
      break;
  }
  return d;
}

pyb::dict model_to_py(const ModelDef& m) {
  pyb::dict d;
  d["version"] = pyb::make_tuple(m.version_major, m.version_minor);
  pyb::list values;
  for (const ValueDef& v : m.values) {
    pyb::dict e;
    e["name"] = v.name;
    e["dtype"] = dtype_name(v.dtype);
    e["shape"] = pyb::tuple(pyb::cast(v.shape));
    e["tensor"] = v.tensor;
    values.append(e);
  }
  d["values"] = values;
  d["inputs"] = pyb::cast(m.inputs);
  d["outputs"] = pyb::cast(m.outputs);
  pyb::list nodes;
  for (const NodeDef& n : m.nodes) {
    pyb::dict e;
    e["op"] = n.op;
    e["name"] = n.name;
    e["inputs"] = pyb::cast(n.inputs);
    e["outputs"] = pyb::cast(n.outputs);
    pyb::dict attrs;
    for (const auto& [k, v] : n.attrs) attrs[pyb::str(k)] = attr_to_py(v);
    e["attrs"] = attrs;
    nodes.append(e);
  }
  d["nodes"] = nodes;
  pyb::list tensors;
  for (const TensorDef& t : m.tensors) tensors.append(tensor_to_py(t));
  d["tensors"] = tensors;
  pyb::dict meta;
  for (const auto& [k, v] : m.metadata) meta[pyb::str(k)] = v;
  d["metadata"] = meta;
  return d;
}

pyb::dict summary(const ModelDef& m) {
  pyb::dict d;
  d["version"] = pyb::make_tuple(m.version_major, m.version_minor);
  d["values"] = m.values.size();
  d["nodes"] = m.nodes.size();
  d["tensors"] = m.tensors.size();
  return d;
}

std::shared_ptr<const ModelDef> load_path(const std::string& path) {
  pyb::gil_scoped_release nogil;
  return load_model_file(path);
}

std::shared_ptr<const ModelDef> load_bytes(const pyb::buffer& data) {
  pyb::buffer_info info = data.request();
  if (info.ndim != 1 || info.itemsize != 1 || (info.ndim == 1 && info.strides[0] != 1))
    throw Error(Code::InvalidArgument, "expected a contiguous bytes-like object");
  pyb::gil_scoped_release nogil;
  return load_model_memory(info.ptr, static_cast<size_t>(info.size));
}

}  // namespace
}  // namespace slimrt::py

SLIMRT_PY_BIND(format) {
  namespace pyb = pybind11;
  using namespace slimrt;
  using namespace slimrt::py;

  m.def("load_model_def", [](const std::string& path) { return model_to_py(*load_path(path)); }, pyb::arg("path"),
        "Loads and fully validates a .slim file; returns the graph as a dict and every tensor's buffers as numpy "
        "copies. Raises FormatError naming what is wrong.");
  m.def("load_model_def_bytes", [](const pyb::buffer& data) { return model_to_py(*load_bytes(data)); },
        pyb::arg("data"), "load_model_def for the bytes of a .slim file.");
  m.def("validate_model_file", [](const std::string& path) { return summary(*load_path(path)); }, pyb::arg("path"),
        "Loads and validates a .slim file without copying anything out; returns counts.");
  m.def("validate_model_bytes", [](const pyb::buffer& data) { return summary(*load_bytes(data)); },
        pyb::arg("data"), "validate_model_file for the bytes of a .slim file.");
  m.def("slim_format_version", [] { return pyb::make_tuple(slim::kVersionMajor, slim::kVersionMinor); },
        "(major, minor) of the .slim format this build reads and writes.");

  m.def("op_schema", [] {
    pyb::dict d;
    for (const OpSchema& s : op_schemas()) {
      pyb::dict attrs;
      for (const AttrSpec& a : s.attrs)
        attrs[pyb::str(a.name)] = pyb::make_tuple(attr_kind_name(a.def.kind), attr_to_py(a.def));
      d[pyb::str(s.name)] = pyb::make_tuple(s.min_inputs, s.max_inputs, attrs);
    }
    return d;
  }, "The C++ op schema: {op: (min_inputs, max_inputs, {attr: (kind, default)})}, the mirror of ir.OPS.");
  m.def("activations", [] { return pyb::tuple(pyb::cast(activation_names())); },
        "Activation names in Act enum order (ir.ACTIVATIONS).");

  m.def("crc32", [](const pyb::buffer& data, uint32_t value) {
    pyb::buffer_info info = data.request();
    if (info.ndim > 1 && info.strides.back() != info.itemsize)
      throw Error(Code::InvalidArgument, "crc32 needs a contiguous buffer");
    size_t n = static_cast<size_t>(info.size * info.itemsize);
    pyb::gil_scoped_release nogil;
    return crc32(info.ptr, n, value);
  }, pyb::arg("data"), pyb::arg("value") = 0, "zlib-compatible CRC-32 (slicing-by-8), chainable like zlib.crc32.");
}

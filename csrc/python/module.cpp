// The slimrt._core extension: exception classes, cpu_info, and every
// binding registered with SLIMRT_PY_BIND.
#include <utility>
#include <vector>

#include "core/common.h"
#include "core/cpu.h"
#include "python/bind.h"

namespace slimrt::py {
namespace {
std::vector<std::pair<const char*, BindFn>>& registry() {
  static std::vector<std::pair<const char*, BindFn>> r;
  return r;
}
pyb::object g_error, g_format_error, g_input_error, g_unsupported_error;
}  // namespace

BindRegistrar::BindRegistrar(const char* name, BindFn fn) { registry().emplace_back(name, fn); }

Isa isa_arg(const pyb::object& isa) {
  if (isa.is_none()) return active_isa();
  std::string s = pyb::str(isa);
  Isa out;
  if (!parse_isa(s, &out)) throw Error(Code::InvalidArgument, "unknown ISA '" + s + "'");
  if (!isa_supported(out))
    throw Error(Code::Unsupported, std::string("ISA '") + s + "' is not supported by this CPU");
  return out;
}

}  // namespace slimrt::py

PYBIND11_MODULE(_core, m) {
  namespace pyb = pybind11;
  using namespace slimrt;
  using namespace slimrt::py;
  m.doc() = "slimrt native core";

  // Exception hierarchy: Error(RuntimeError) <- FormatError, InputError(+ValueError), UnsupportedError.
  static pyb::exception<Error> err(m, "Error", PyExc_RuntimeError);
  g_error = err;
  g_format_error = pyb::reinterpret_steal<pyb::object>(
      PyErr_NewException("slimrt._core.FormatError", err.ptr(), nullptr));
  pyb::tuple input_bases = pyb::make_tuple(err, pyb::handle(PyExc_ValueError));
  g_input_error = pyb::reinterpret_steal<pyb::object>(
      PyErr_NewException("slimrt._core.InputError", input_bases.ptr(), nullptr));
  g_unsupported_error = pyb::reinterpret_steal<pyb::object>(
      PyErr_NewException("slimrt._core.UnsupportedError", err.ptr(), nullptr));
  m.attr("FormatError") = g_format_error;
  m.attr("InputError") = g_input_error;
  m.attr("UnsupportedError") = g_unsupported_error;
  pyb::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyObject* cls = g_error.ptr();
      switch (e.code()) {
        case Code::Format: cls = g_format_error.ptr(); break;
        case Code::InvalidArgument: cls = g_input_error.ptr(); break;
        case Code::Unsupported: cls = g_unsupported_error.ptr(); break;
        case Code::OutOfMemory: PyErr_SetString(PyExc_MemoryError, e.what()); return;
        default: break;
      }
      PyErr_SetString(cls, e.what());
    }
  });

  m.def("cpu_info", [] {
    const CpuInfo& c = cpu_info();
    pyb::dict d;
    d["vendor"] = c.vendor;
    d["brand"] = c.brand;
    pyb::dict f;
    f["avx2"] = c.avx2; f["fma"] = c.fma; f["f16c"] = c.f16c;
    f["avx512f"] = c.avx512f; f["avx512bw"] = c.avx512bw; f["avx512vl"] = c.avx512vl;
    f["avx512dq"] = c.avx512dq; f["avx512vnni"] = c.avx512vnni; f["avx512vbmi"] = c.avx512vbmi; f["avxvnni"] = c.avxvnni;
    f["avx512bf16"] = c.avx512bf16; f["amx_tile"] = c.amx_tile; f["amx_int8"] = c.amx_int8;
    f["os_avx"] = c.os_avx; f["os_avx512"] = c.os_avx512; f["os_amx"] = c.os_amx;
    f["amx_permitted"] = c.amx_permitted;
    d["features"] = f;
    d["best_isa"] = isa_name(c.best);
    d["isa"] = isa_name(c.active);
    d["isa_cap"] = c.cap.empty() ? pyb::object(pyb::none()) : pyb::object(pyb::str(c.cap));
    pyb::list supported;
    for (int i = 0; i <= static_cast<int>(c.best); ++i) supported.append(isa_name(static_cast<Isa>(i)));
    d["supported_isas"] = supported;
    return d;
  }, "What the CPU offers, what the OS enables, and which ISA the dispatcher chose.");

  for (auto& [name, fn] : registry()) fn(m);
}

// Registration of pybind11 binding functions. Each csrc/python/bind_*.cpp
// registers itself with SLIMRT_PY_BIND(name) { ... }, so adding a binding
// file needs no edit elsewhere. The glue converts arrays, releases the GIL
// and maps errors; it holds no policy.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "core/cpu.h"

namespace slimrt {
struct SchedulerStats;  // runtime/scheduler.h
}

namespace slimrt::py {

namespace pyb = pybind11;
using BindFn = void (*)(pyb::module_&);

struct BindRegistrar {
  BindRegistrar(const char* name, BindFn fn);
};

// Parses an `isa` keyword ("scalar", "avx2", ...; None = the active ISA) and
// raises UnsupportedError when this CPU cannot run it.
Isa isa_arg(const pyb::object& isa);

// A WidthScheduler's statistics as a dict (bind_scheduler.cpp): WidthScheduler.stats() and
// Session.stats() return it.
pyb::dict scheduler_stats_dict(const ::slimrt::SchedulerStats& s);

}  // namespace slimrt::py

#define SLIMRT_PY_BIND(name)                                              \
  static void slimrt_bind_##name(pybind11::module_& m);                   \
  static ::slimrt::py::BindRegistrar slimrt_reg_##name(#name, slimrt_bind_##name); \
  static void slimrt_bind_##name(pybind11::module_& m)

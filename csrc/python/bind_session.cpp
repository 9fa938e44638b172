// slimrt._core.Session: numpy in, numpy out, GIL released while running.
#include <algorithm>
#include <chrono>
#include <memory>

#include "core/threadpool.h"
#include "python/bind.h"
#include "runtime/program.h"
#include "runtime/session.h"

namespace slimrt::py {
namespace {

pyb::dtype numpy_dtype(DType t) {
  switch (t) {
    case DType::F32: return pyb::dtype::of<float>();
    case DType::F16: return pyb::dtype("float16");
    case DType::I8: return pyb::dtype::of<int8_t>();
    case DType::U8: return pyb::dtype::of<uint8_t>();
    case DType::I16: return pyb::dtype::of<int16_t>();
    case DType::U16: return pyb::dtype::of<uint16_t>();
    case DType::I32: return pyb::dtype::of<int32_t>();
    case DType::I64: return pyb::dtype::of<int64_t>();
  }
  return pyb::dtype::of<float>();
}

pyb::list value_infos(const ModelDef& m, const std::vector<int32_t>& ids) {
  pyb::list r;
  for (int32_t v : ids) {
    const ValueDef& d = m.values[v];
    pyb::list shape;
    for (int64_t s : d.shape) shape.append(s < 0 ? pyb::object(pyb::none()) : pyb::object(pyb::int_(s)));
    r.append(pyb::make_tuple(d.name, pyb::tuple(shape), dtype_name(d.dtype)));
  }
  return r;
}

class PySession {
 public:
  PySession(std::shared_ptr<const ModelDef> m, int threads, const pyb::object& isa, const WidthOptions& w,
            bool tune, bool fuse) {
    ProgramOptions o;
    o.tune = tune;
    o.fuse = fuse;
    o.isa = isa_arg(isa);
    o.threads = threads > 0 ? threads : default_threads();
    pyb::gil_scoped_release nogil;
    sess_ = std::make_shared<Session>(std::move(m), o, w);
    prog_ = &sess_->program();
  }

  pyb::list run(const pyb::list& arrays, int threads, double width) { return run_impl(arrays, threads, width, 1, nullptr); }

  // Runs `runs` times with per-node timing; returns [(node, op, kernel, ms per run)] of the nodes that ran
  // and the mean wall time of a run.
  pyb::tuple profile(const pyb::list& arrays, int runs, int threads, double width) {
    if (runs < 1) throw Error(Code::InvalidArgument, "profile: runs must be >= 1");
    std::vector<double> node_ms;
    auto t0 = std::chrono::steady_clock::now();
    run_impl(arrays, threads, width, runs, &node_ms);
    double total = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const ModelDef& m = prog_->model();
    auto names = prog_->kernel_names(*last_plan_);
    pyb::list rows;
    for (size_t n = 0; n < node_ms.size(); ++n)
      if (last_plan_->active[n] && !prog_->op_is_view(n))
        rows.append(pyb::make_tuple(m.nodes[n].name, m.nodes[n].op, names[n], node_ms[n] / runs));
    return pyb::make_tuple(rows, total / runs);
  }

  pyb::list run_impl(const pyb::list& arrays, int threads, double width, int runs, std::vector<double>* node_ms) {
    const ModelDef& m = prog_->model();
    if (arrays.size() != m.inputs.size())
      throw Error(Code::InvalidArgument, "model takes " + std::to_string(m.inputs.size()) + " inputs, got " +
                                             std::to_string(arrays.size()));
    std::vector<pyb::array> keep;
    std::vector<TensorInfo> infos;
    std::vector<const void*> in_ptrs;
    for (size_t i = 0; i < arrays.size(); ++i) {
      pyb::array a = pyb::array::ensure(arrays[i], pyb::array::c_style);
      if (!a) throw Error(Code::InvalidArgument, "input '" + m.values[m.inputs[i]].name + "' is not an array");
      DType want = m.values[m.inputs[i]].dtype;
      if (!a.dtype().is(numpy_dtype(want))) {
        // Convert within a kind (float64 -> float32, int32 -> int64), never float <-> int.
        bool want_float = want == DType::F32 || want == DType::F16;
        char kind = a.dtype().kind();
        bool ok = want_float ? kind == 'f' : (kind == 'i' || kind == 'u');
        if (!ok)
          throw Error(Code::InvalidArgument, "input '" + m.values[m.inputs[i]].name + "': dtype " +
                                                 std::string(pyb::str(a.dtype())) + ", expected " + dtype_name(want));
        a = pyb::array(pyb::module_::import("numpy").attr("ascontiguousarray")(a, numpy_dtype(want)));
      }
      TensorInfo ti;
      ti.dtype = want;
      for (pyb::ssize_t d = 0; d < a.ndim(); ++d) ti.shape.push_back(a.shape(d));
      infos.push_back(ti);
      in_ptrs.push_back(a.data());
      keep.push_back(a);
    }
    int w = sess_->pick(width);
    last_width_ = w;
    auto plan = sess_->plan(infos, w);
    std::vector<pyb::array> outs;
    std::vector<void*> out_ptrs;
    for (const TensorInfo& t : plan->output_infos) {
      std::vector<pyb::ssize_t> shape(t.shape.begin(), t.shape.end());
      pyb::array a(numpy_dtype(t.dtype), shape);
      out_ptrs.push_back(a.mutable_data());
      outs.push_back(a);
    }
    {
      pyb::gil_scoped_release nogil;
      for (int r = 0; r < runs; ++r) sess_->execute(*plan, w, in_ptrs, out_ptrs, threads, node_ms);
    }
    if (node_ms) last_plan_ = plan;
    pyb::list r;
    for (auto& a : outs) r.append(a);
    return r;
  }

  std::shared_ptr<Session> sess_;
  Program* prog_ = nullptr;
  int last_width_ = -1;
  std::shared_ptr<const Plan> last_plan_;  // of the last profile call
};

pyb::dict scheduler_stats(PySession& s) {
  WidthScheduler* sc = s.sess_->scheduler();
  if (!sc) return pyb::dict();
  const SchedulerStats st = sc->stats();
  pyb::dict d = scheduler_stats_dict(st);
  d["current_width"] = s.sess_->widths()[st.current];
  return d;
}

}  // namespace

SLIMRT_PY_BIND(session) {
  pyb::class_<PySession>(m, "Session")
      .def(pyb::init([](const std::string& path, int threads, const pyb::object& isa, double target, double pct,
                        double min_width, bool tune, bool fuse) {
             std::shared_ptr<const ModelDef> md;
             {
               pyb::gil_scoped_release nogil;
               md = load_model_file(path);
             }
             return std::make_unique<PySession>(md, threads, isa, WidthOptions{target, pct, min_width}, tune, fuse);
           }),
           pyb::arg("path"), pyb::arg("threads") = 0, pyb::arg("isa") = pyb::none(),
           pyb::arg("latency_target_ms") = 0.0, pyb::arg("percentile") = 95.0, pyb::arg("min_width") = 0.0,
           pyb::arg("tune") = false, pyb::arg("fuse") = true)
      .def_static("from_bytes", [](const pyb::bytes& data, int threads, const pyb::object& isa, double target,
                                   double pct, double min_width, bool tune, bool fuse) {
             std::string_view v = data;
             std::shared_ptr<const ModelDef> md;
             {
               pyb::gil_scoped_release nogil;
               md = load_model_memory(v.data(), v.size());
             }
             return std::make_unique<PySession>(md, threads, isa, WidthOptions{target, pct, min_width}, tune, fuse);
           },
           pyb::arg("data"), pyb::arg("threads") = 0, pyb::arg("isa") = pyb::none(),
           pyb::arg("latency_target_ms") = 0.0, pyb::arg("percentile") = 95.0, pyb::arg("min_width") = 0.0,
           pyb::arg("tune") = false, pyb::arg("fuse") = true)
      .def("run", &PySession::run, pyb::arg("inputs"), pyb::arg("threads") = 0, pyb::arg("width") = 0.0)
      .def("profile", &PySession::profile, pyb::arg("inputs"), pyb::arg("runs") = 10, pyb::arg("threads") = 0,
           pyb::arg("width") = 0.0)
      .def_property_readonly("widths", [](PySession& s) { return s.sess_->widths(); })
      .def_property_readonly("last_width", [](PySession& s) -> pyb::object {
        if (s.last_width_ < 0) return pyb::none();
        return pyb::float_(s.sess_->widths()[s.last_width_]);
      })
      .def_property_readonly("current_width", [](PySession& s) -> pyb::object {
        int w = s.sess_->current_width_index();
        if (w < 0) return pyb::none();
        return pyb::float_(s.sess_->widths()[w]);
      })
      .def("width_outputs", [](PySession& s, double width) {
        int w = s.sess_->widths().empty() ? -1 : (width > 0 ? s.sess_->pick(width) : 0);
        return value_infos(s.prog_->model(), s.sess_->outputs(w));
      })
      .def("scheduler_stats", &scheduler_stats)
      .def_property_readonly("inputs", [](PySession& s) { return value_infos(s.prog_->model(), s.prog_->model().inputs); })
      .def_property_readonly("outputs", [](PySession& s) { return value_infos(s.prog_->model(), s.prog_->model().outputs); })
      .def_property_readonly("isa", [](PySession& s) { return std::string(isa_name(s.prog_->isa())); })
      .def_property_readonly("threads", [](PySession& s) { return s.prog_->threads(); })
      .def_property_readonly("tuning_signature", [](PySession& s) { return s.prog_->tuning_signature(); })
      .def("tuning_records", [](PySession& s) { return s.prog_->tuning_records(); })
      .def("kernel_names", [](PySession& s) {
        pyb::list r;
        const ModelDef& m = s.prog_->model();
        auto names = s.prog_->kernel_names();
        for (size_t i = 0; i < names.size(); ++i) r.append(pyb::make_tuple(m.nodes[i].name, m.nodes[i].op, names[i]));
        return r;
      })
      .def("plan_kernels", [](PySession& s, const std::vector<std::vector<int64_t>>& shapes) {
        const ModelDef& m = s.prog_->model();
        std::vector<TensorInfo> infos;
        for (size_t i = 0; i < shapes.size() && i < m.inputs.size(); ++i)
          infos.push_back({m.values[m.inputs[i]].dtype, shapes[i]});
        auto p = s.prog_->plan(infos);
        auto names = s.prog_->kernel_names(*p);
        pyb::list r;
        for (size_t i = 0; i < names.size(); ++i)
          if (p->active[i]) r.append(pyb::make_tuple(m.nodes[i].name, m.nodes[i].op, names[i]));
        return r;
      })
      .def("plan_info", [](PySession& s, const std::vector<std::vector<int64_t>>& shapes) {
        const ModelDef& m = s.prog_->model();
        std::vector<TensorInfo> infos;
        for (size_t i = 0; i < shapes.size() && i < m.inputs.size(); ++i)
          infos.push_back({m.values[m.inputs[i]].dtype, shapes[i]});
        auto p = s.prog_->plan(infos);
        pyb::dict d;
        d["arena_bytes"] = p->arena_bytes;
        size_t total = 0;
        for (size_t v = 0; v < p->infos.size(); ++v)
          if (p->offset[v] >= 0) total += p->infos[v].bytes();
        d["activation_bytes_unplanned"] = total;
        size_t ws = 0;
        for (size_t n = 0; n < p->ws_bytes.size(); ++n)
          if (p->active[n]) ws = std::max(ws, p->ws_bytes[n]);
        d["max_workspace_bytes"] = ws;
        return d;
      });
}

}  // namespace slimrt::py

// C API: one-line wrappers over the C++ runtime; every exception becomes a status code.
#include "slimrt/slimrt.h"

#include <cstring>
#include <new>
#include <string>

#include "core/cpu.h"
#include "core/threadpool.h"
#include "runtime/program.h"
#include "runtime/session.h"

struct slimrt_model {
  std::shared_ptr<const slimrt::ModelDef> def;
};
struct slimrt_session {
  std::unique_ptr<slimrt::Session> sess;
};

namespace {
thread_local std::string tl_error;

slimrt_status_t set_error(slimrt_status_t s, const std::string& msg) {
  tl_error = msg;
  return s;
}

template <typename F>
slimrt_status_t guarded(F&& f) {
  try {
    tl_error.clear();
    f();
    return SLIMRT_OK;
  } catch (const slimrt::Error& e) {
    return set_error(static_cast<slimrt_status_t>(static_cast<int>(e.code())), e.what());
  } catch (const std::bad_alloc&) {
    return set_error(SLIMRT_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return set_error(SLIMRT_ERR_INTERNAL, e.what());
  } catch (...) {
    return set_error(SLIMRT_ERR_INTERNAL, "unknown error");
  }
}

void need(bool ok, const char* what) {
  if (!ok) throw slimrt::Error(slimrt::Code::InvalidArgument, what);
}

std::vector<slimrt::TensorInfo> input_infos(const slimrt_tensor_t* inputs, int32_t n) {
  std::vector<slimrt::TensorInfo> infos;
  need(n >= 0 && (n == 0 || inputs), "inputs is NULL");
  for (int32_t i = 0; i < n; ++i) {
    need(inputs[i].ndim >= 0 && inputs[i].ndim <= SLIMRT_MAX_DIMS, "input ndim out of range");
    need(inputs[i].ndim == 0 || inputs[i].dims, "input dims is NULL");
    need(inputs[i].data != nullptr, "input data is NULL");
    need(inputs[i].dtype >= SLIMRT_F32 && inputs[i].dtype <= SLIMRT_I64, "input dtype out of range");
    slimrt::TensorInfo t;
    t.dtype = static_cast<slimrt::DType>(inputs[i].dtype);
    t.shape.assign(inputs[i].dims, inputs[i].dims + inputs[i].ndim);
    infos.push_back(t);
  }
  return infos;
}

void fill_outputs(const slimrt::Plan& p, slimrt_output_t* outputs, int32_t n) {
  need(n == static_cast<int32_t>(p.output_infos.size()), "wrong number of outputs");
  need(n == 0 || outputs, "outputs is NULL");
  for (int32_t i = 0; i < n; ++i) {
    const auto& t = p.output_infos[i];
    need(t.shape.size() <= SLIMRT_MAX_DIMS, "output has more than SLIMRT_MAX_DIMS dimensions");
    outputs[i].dtype = static_cast<slimrt_dtype_t>(t.dtype);
    outputs[i].ndim = static_cast<int32_t>(t.shape.size());
    for (size_t d = 0; d < t.shape.size(); ++d) outputs[i].dims[d] = t.shape[d];
  }
}
}  // namespace

extern "C" {

const char* slimrt_version(void) { return "0.1.0"; }
const char* slimrt_last_error(void) { return tl_error.c_str(); }
const char* slimrt_cpu_isa(void) { return slimrt::isa_name(slimrt::active_isa()); }

slimrt_status_t slimrt_model_load(const char* path, slimrt_model_t** out) {
  return guarded([&] {
    need(path && out, "path or out is NULL");
    *out = nullptr;
    auto m = std::make_unique<slimrt_model>();
    m->def = slimrt::load_model_file(path);
    *out = m.release();
  });
}

slimrt_status_t slimrt_model_load_memory(const void* data, size_t size, slimrt_model_t** out) {
  return guarded([&] {
    need((data || size == 0) && out, "data or out is NULL");
    *out = nullptr;
    auto m = std::make_unique<slimrt_model>();
    m->def = slimrt::load_model_memory(data, size);
    *out = m.release();
  });
}

void slimrt_model_free(slimrt_model_t* model) { delete model; }

slimrt_status_t slimrt_model_num_inputs(const slimrt_model_t* model, int32_t* n) {
  return guarded([&] {
    need(model && n, "model or n is NULL");
    *n = static_cast<int32_t>(model->def->inputs.size());
  });
}

slimrt_status_t slimrt_model_num_outputs(const slimrt_model_t* model, int32_t* n) {
  return guarded([&] {
    need(model && n, "model or n is NULL");
    *n = static_cast<int32_t>(model->def->outputs.size());
  });
}

slimrt_status_t slimrt_model_input_info(const slimrt_model_t* model, int32_t index, const char** name,
                                        slimrt_dtype_t* dtype, int32_t* ndim, const int64_t** dims) {
  return guarded([&] {
    need(model != nullptr, "model is NULL");
    need(index >= 0 && index < static_cast<int32_t>(model->def->inputs.size()), "input index out of range");
    const auto& v = model->def->values[model->def->inputs[index]];
    if (name) *name = v.name.c_str();
    if (dtype) *dtype = static_cast<slimrt_dtype_t>(v.dtype);
    if (ndim) *ndim = static_cast<int32_t>(v.shape.size());
    if (dims) *dims = v.shape.data();
  });
}

slimrt_status_t slimrt_model_output_info(const slimrt_model_t* model, int32_t index, const char** name,
                                         slimrt_dtype_t* dtype) {
  return guarded([&] {
    need(model != nullptr, "model is NULL");
    need(index >= 0 && index < static_cast<int32_t>(model->def->outputs.size()), "output index out of range");
    const auto& v = model->def->values[model->def->outputs[index]];
    if (name) *name = v.name.c_str();
    if (dtype) *dtype = static_cast<slimrt_dtype_t>(v.dtype);
  });
}

void slimrt_session_options_init(slimrt_session_options_t* options) {
  if (options) std::memset(options, 0, sizeof(*options));
}

slimrt_status_t slimrt_session_create(const slimrt_model_t* model, const slimrt_session_options_t* options,
                                      slimrt_session_t** out) {
  return guarded([&] {
    need(model && out, "model or out is NULL");
    *out = nullptr;
    slimrt::ProgramOptions o;
    o.isa = slimrt::active_isa();
    o.threads = slimrt::default_threads();
    if (options) {
      need(options->threads >= 0, "threads must be >= 0");
      if (options->threads > 0) o.threads = options->threads;
      o.tune = options->tune != 0;
      if (options->isa) {
        slimrt::Isa isa;
        need(slimrt::parse_isa(options->isa, &isa), "unknown isa");
        if (!slimrt::isa_supported(isa))
          throw slimrt::Error(slimrt::Code::Unsupported, std::string("ISA '") + options->isa + "' is not supported by this CPU");
        o.isa = isa;
      }
    }
    slimrt::WidthOptions w;
    if (options) {
      need(options->latency_target_ms >= 0 && options->percentile >= 0 && options->percentile <= 100 &&
               options->min_width >= 0 && options->min_width <= 1,
           "latency_target_ms, percentile or min_width out of range");
      w.latency_target_ms = options->latency_target_ms;
      if (options->percentile > 0) w.percentile = options->percentile;
      w.min_width = options->min_width;
    }
    auto s = std::make_unique<slimrt_session>();
    s->sess = std::make_unique<slimrt::Session>(model->def, o, w);
    *out = s.release();
  });
}

void slimrt_session_free(slimrt_session_t* session) { delete session; }

slimrt_status_t slimrt_session_output_shapes(slimrt_session_t* session, const slimrt_tensor_t* inputs,
                                             int32_t n_inputs, slimrt_output_t* outputs, int32_t n_outputs) {
  return guarded([&] {
    need(session != nullptr, "session is NULL");
    int w = session->sess->widths().empty() ? -1 : 0;
    auto plan = session->sess->plan(input_infos(inputs, n_inputs), w);
    fill_outputs(*plan, outputs, n_outputs);
  });
}

slimrt_status_t slimrt_session_widths(slimrt_session_t* session, double* widths, int32_t* n) {
  return guarded([&] {
    need(session && n, "session or n is NULL");
    const auto& ws = session->sess->widths();
    if (widths) {
      need(*n >= static_cast<int32_t>(ws.size()), "widths array too small");
      for (size_t i = 0; i < ws.size(); ++i) widths[i] = ws[i];
    }
    *n = static_cast<int32_t>(ws.size());
  });
}

slimrt_status_t slimrt_session_run(slimrt_session_t* session, const slimrt_tensor_t* inputs, int32_t n_inputs,
                                   slimrt_output_t* outputs, int32_t n_outputs) {
  return slimrt_session_run_width(session, 0.0, inputs, n_inputs, outputs, n_outputs, nullptr);
}

slimrt_status_t slimrt_session_run_width(slimrt_session_t* session, double width, const slimrt_tensor_t* inputs,
                                         int32_t n_inputs, slimrt_output_t* outputs, int32_t n_outputs,
                                         double* used_width) {
  return guarded([&] {
    need(session != nullptr, "session is NULL");
    need(width >= 0 && width <= 1, "width must be in [0, 1]");
    int w = session->sess->pick(width);
    auto plan = session->sess->plan(input_infos(inputs, n_inputs), w);
    fill_outputs(*plan, outputs, n_outputs);
    std::vector<const void*> in;
    std::vector<void*> out;
    for (int32_t i = 0; i < n_inputs; ++i) in.push_back(inputs[i].data);
    for (int32_t i = 0; i < n_outputs; ++i) {
      need(outputs[i].data != nullptr, "output data is NULL");
      if (outputs[i].capacity < plan->output_infos[i].bytes())
        throw slimrt::Error(slimrt::Code::InvalidArgument,
                            "output " + std::to_string(i) + " needs " + std::to_string(plan->output_infos[i].bytes()) +
                                " bytes, capacity is " + std::to_string(outputs[i].capacity));
      out.push_back(outputs[i].data);
    }
    session->sess->execute(*plan, w, in, out);
    if (used_width) *used_width = w < 0 ? 1.0 : session->sess->widths()[w];
  });
}

}  // extern "C"

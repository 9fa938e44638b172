// slimrt._core.kernels: int8 GEMM / conv kernels (u8 activations x s8 weights).
// Glue only: checks dtypes/shapes/strides (InputError), releases the GIL, calls the kernels.
// Arrays are never converted: activations float32 or uint8, weights int8, scales float32.
// 2-D operands may be row-strided views (unit stride along the last axis).
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "core/common.h"
#include "core/threadpool.h"
#include "kernels/gemm/sgemm.h"
#include "kernels/qgemm/qgemm.h"
#include "python/args.h"
#include "python/bind.h"

namespace slimrt::py {
namespace {

using kernels::PackedQ8B;

using namespace args;

struct Residual {
  Mat<float> m;
  bool set = false;
};
Residual residual_arg(const pyb::object& o, int64_t M, int64_t N) {
  Residual r;
  if (o.is_none()) return r;
  r.m = as_mat<float>(o, "residual");
  if (r.m.rows != M || r.m.cols != N)
    bad("residual must have shape (" + std::to_string(M) + ", " + std::to_string(N) + ")");
  r.set = true;
  return r;
}

// Int8 weights packed once; runs keep a reusable workspace (a fresh one when another
// thread holds it).
struct PyPackedQ8 {
  std::unique_ptr<PackedQ8B> b;
  std::mutex ws_mu;
  AlignedPtr<char> ws;
  size_t ws_size = 0;

  template <typename F>
  void with_workspace(size_t need, F&& f) {
    std::unique_lock<std::mutex> lock(ws_mu, std::try_to_lock);
    if (lock.owns_lock()) {
      if (ws_size < need) {
        ws = aligned_array<char>(need);
        ws_size = need;
      }
      f(static_cast<void*>(ws.get()));
    } else {
      AlignedPtr<char> tmp = aligned_array<char>(need);
      f(static_cast<void*>(tmp.get()));
    }
  }

  pyb::array run_dynamic(const pyb::object& a_obj, const pyb::object& w_scale, const pyb::object& bias,
                         const std::string& act, float alpha, const pyb::object& residual, int threads,
                         const pyb::object& out, int repeat) {
    Mat<float> a = as_mat<float>(a_obj, "a");
    if (a.cols != b->K) bad("a must have shape (M, " + std::to_string(b->K) + ")");
    pyb::array keep_s, keep_b;
    Epilogue ep;
    const float* ws = vec_arg(w_scale, "w_scale", b->N, &keep_s, true);
    ep.bias = vec_arg(bias, "bias", b->N, &keep_b);
    ep.act = act_arg(act);
    ep.alpha = alpha;
    Residual res = residual_arg(residual, a.rows, b->N);
    if (res.set) {
      ep.residual = res.m.ptr;
      ep.ldr = res.m.ld;
    }
    Mat<float> c = out_mat<float>(out, a.rows, b->N);
    const int t = threads_arg(threads);
    repeat = repeat_arg(repeat);
    {
      pyb::gil_scoped_release nogil;
      with_workspace(kernels::q8_dense_workspace(a.rows, b->K, t), [&](void* w) {
        for (int r = 0; r < repeat; ++r) kernels::q8_dense_dynamic(a.rows, a.ptr, a.ld, *b, ws, c.ptr, c.ld, ep, w, t);
      });
    }
    return c.arr;
  }

  pyb::array run_acc(const pyb::object& aq_obj, int32_t a_zero, int threads, const pyb::object& out) {
    Mat<uint8_t> a = as_mat<uint8_t>(aq_obj, "aq");
    if (a.cols != b->K) bad("aq must have shape (M, " + std::to_string(b->K) + ")");
    if (a_zero < 0 || a_zero > 255) bad("a_zero must be in [0, 255]");
    Mat<int32_t> c = out_mat<int32_t>(out, a.rows, b->N);
    const int t = threads_arg(threads);
    {
      pyb::gil_scoped_release nogil;
      with_workspace(kernels::q8_dense_workspace(a.rows, b->K, t), [&](void* w) {
        kernels::q8_gemm_acc(a.rows, a.ptr, a.ld, a_zero, *b, c.ptr, c.ld, w, t);
      });
    }
    return c.arr;
  }

  pyb::array run_static(const pyb::object& aq_obj, float a_scale, int32_t a_zero, const pyb::object& w_scale,
                        const pyb::object& bias, const std::string& act, float alpha, float out_scale,
                        int32_t out_zero, int threads, const pyb::object& out) {
    Mat<uint8_t> a = as_mat<uint8_t>(aq_obj, "aq");
    if (a.cols != b->K) bad("aq must have shape (M, " + std::to_string(b->K) + ")");
    if (a_zero < 0 || a_zero > 255) bad("a_zero must be in [0, 255]");
    pyb::array keep_s, keep_b;
    const float* ws = vec_arg(w_scale, "w_scale", b->N, &keep_s, true);
    const float* bp = vec_arg(bias, "bias", b->N, &keep_b);
    const Act ac = act_arg(act);
    Mat<uint8_t> c = out_mat<uint8_t>(out, a.rows, b->N);
    const int t = threads_arg(threads);
    {
      pyb::gil_scoped_release nogil;
      with_workspace(kernels::q8_dense_workspace(a.rows, b->K, t), [&](void* w) {
        kernels::q8_dense_static(a.rows, a.ptr, a.ld, a_scale, a_zero, *b, ws, bp, ac, alpha, out_scale, out_zero,
                                 c.ptr, c.ld, w, t);
      });
    }
    return c.arr;
  }

  pyb::array run_static_f32(const pyb::object& aq_obj, float a_scale, int32_t a_zero, const pyb::object& w_scale,
                            const pyb::object& bias, const std::string& act, float alpha,
                            const pyb::object& residual, int threads, const pyb::object& out) {
    Mat<uint8_t> a = as_mat<uint8_t>(aq_obj, "aq");
    if (a.cols != b->K) bad("aq must have shape (M, " + std::to_string(b->K) + ")");
    if (a_zero < 0 || a_zero > 255) bad("a_zero must be in [0, 255]");
    pyb::array keep_s, keep_b;
    Epilogue ep;
    const float* ws = vec_arg(w_scale, "w_scale", b->N, &keep_s, true);
    ep.bias = vec_arg(bias, "bias", b->N, &keep_b);
    ep.act = act_arg(act);
    ep.alpha = alpha;
    Residual res = residual_arg(residual, a.rows, b->N);
    if (res.set) {
      ep.residual = res.m.ptr;
      ep.ldr = res.m.ld;
    }
    Mat<float> c = out_mat<float>(out, a.rows, b->N);
    const int t = threads_arg(threads);
    {
      pyb::gil_scoped_release nogil;
      with_workspace(kernels::q8_dense_workspace(a.rows, b->K, t), [&](void* w) {
        kernels::q8_dense_static_f32(a.rows, a.ptr, a.ld, a_scale, a_zero, *b, ws, c.ptr, c.ld, ep, w, t);
      });
    }
    return c.arr;
  }
};

std::unique_ptr<PyPackedQ8> pack_q8(const pyb::object& w_obj, Isa isa) {
  pyb::array w = c_contig<int8_t>(w_obj, "wq", 2);
  const int8_t* p = static_cast<const int8_t*>(w.data());
  const int64_t N = w.shape(0), K = w.shape(1);
  auto h = std::make_unique<PyPackedQ8>();
  pyb::gil_scoped_release nogil;
  h->b = kernels::pack_q8_b(p, N, K, isa);
  return h;
}

}  // namespace
}  // namespace slimrt::py

SLIMRT_PY_BIND(qgemm) {
  using namespace slimrt;
  using namespace slimrt::py;
  namespace pyb = pybind11;
  using pyb::arg;
  pyb::module_ k = m.def_submodule("kernels", "Low-level compute kernels (for tests and benchmarks).");

  pyb::class_<PyPackedQ8>(k, "PackedQ8",
                          "int8 weights wq[N, K] (w = w_scale[n] * wq) packed once for one ISA's int8 GEMM.")
      .def_property_readonly("N", [](const PyPackedQ8& p) { return p.b->N; })
      .def_property_readonly("K", [](const PyPackedQ8& p) { return p.b->K; })
      .def_property_readonly("Kp", [](const PyPackedQ8& p) { return p.b->Kp; })
      .def_property_readonly("isa", [](const PyPackedQ8& p) { return std::string(isa_name(p.b->isa)); })
      .def_property_readonly("nr", [](const PyPackedQ8& p) { return p.b->nr; })
      .def_property_readonly("kg", [](const PyPackedQ8& p) { return p.b->kg; })
      .def_property_readonly("packed_bytes",
                             [](const PyPackedQ8& p) { return p.b->panels * p.b->nr * p.b->Kp; })
      .def("run_dynamic", &PyPackedQ8::run_dynamic, arg("a"), arg("w_scale"), arg("bias") = pyb::none(),
           arg("act") = "none", arg("alpha") = 0.0f, arg("residual") = pyb::none(), arg("threads") = 1,
           arg("out") = pyb::none(), arg("repeat") = 1,
           "a float32 [M, K] quantized per row to uint8 -> act(acc * a_scale[m] * w_scale[n] + bias + residual), "
           "float32 [M, N]. repeat: run it that many times in this call (benchmarks: the kernel's time without "
           "the call's own).")
      .def("run_acc", &PyPackedQ8::run_acc, arg("aq"), arg("a_zero"), arg("threads") = 1, arg("out") = pyb::none(),
           "Raw int32 accumulators sum_k (aq[m, k] - a_zero) * wq[n, k], [M, N].")
      .def("run_static", &PyPackedQ8::run_static, arg("aq"), arg("a_scale"), arg("a_zero"), arg("w_scale"),
           arg("bias") = pyb::none(), arg("act") = "none", arg("alpha") = 0.0f, arg("out_scale") = 1.0f,
           arg("out_zero") = 0, arg("threads") = 1, arg("out") = pyb::none(),
           "Static quantization: uint8 aq with one (a_scale, a_zero) -> uint8 [M, N] requantized with "
           "(out_scale, out_zero).")
      .def("run_static_f32", &PyPackedQ8::run_static_f32, arg("aq"), arg("a_scale"), arg("a_zero"), arg("w_scale"),
           arg("bias") = pyb::none(), arg("act") = "none", arg("alpha") = 0.0f, arg("residual") = pyb::none(),
           arg("threads") = 1, arg("out") = pyb::none(), "Static quantization with float32 [M, N] output.");

  k.def(
      "q8_pack",
      [](const pyb::object& wq, const pyb::object& isa) { return pack_q8(wq, isa_arg(isa)); }, arg("wq"),
      arg("isa") = pyb::none(), "Packs int8 weights wq[N, K] for the int8 GEMM of `isa` (None = active ISA).");

  k.def(
      "quantize_rows_u8",
      [](const pyb::object& a_obj, const pyb::object& isa_obj, int threads) {
        Mat<float> a = as_mat<float>(a_obj, "a");
        Isa isa = isa_arg(isa_obj);
        const int t = threads_arg(threads);
        pyb::array_t<uint8_t> q({a.rows, a.cols});
        pyb::array_t<float> scale(a.rows);
        pyb::array_t<int32_t> zero(a.rows);
        uint8_t* qp = q.mutable_data();
        float* sp = scale.mutable_data();
        int32_t* zp = zero.mutable_data();
        {
          pyb::gil_scoped_release nogil;
          kernels::quantize_rows_u8(a.rows, a.cols, a.ptr, a.ld, qp, a.cols, sp, zp, isa, t);
        }
        return pyb::make_tuple(q, scale, zero);
      },
      arg("a"), arg("isa") = pyb::none(), arg("threads") = 1,
      "Dynamic per-row quantization of float32 a[M, K] -> (q uint8 [M, K], scale float32 [M], zero int32 [M]).");

  k.def(
      "quantize_u8",
      [](const pyb::object& x_obj, float scale, int32_t zero, const pyb::object& isa_obj) {
        pyb::array x = typed<float>(x_obj, "x");
        if (!(x.flags() & pyb::array::c_style)) bad("x must be C-contiguous");
        Isa isa = isa_arg(isa_obj);
        pyb::array_t<uint8_t> q(std::vector<pyb::ssize_t>(x.shape(), x.shape() + x.ndim()));
        const float* xp = static_cast<const float*>(x.data());
        uint8_t* qp = q.mutable_data();
        const int64_t n = x.size();
        {
          pyb::gil_scoped_release nogil;
          kernels::quantize_u8(xp, n, scale, zero, qp, isa);
        }
        return q;
      },
      arg("x"), arg("scale"), arg("zero"), arg("isa") = pyb::none(),
      "q = clamp(rint(x * (1/scale)) + zero, 0, 255) as uint8 (C-contiguous float32 x).");

  k.def(
      "dequantize_u8",
      [](const pyb::object& q_obj, float scale, int32_t zero) {
        pyb::array q = typed<uint8_t>(q_obj, "q");
        if (!(q.flags() & pyb::array::c_style)) bad("q must be C-contiguous");
        pyb::array_t<float> x(std::vector<pyb::ssize_t>(q.shape(), q.shape() + q.ndim()));
        const uint8_t* qp = static_cast<const uint8_t*>(q.data());
        float* xp = x.mutable_data();
        const int64_t n = q.size();
        {
          pyb::gil_scoped_release nogil;
          kernels::dequantize_u8(qp, n, scale, zero, xp);
        }
        return x;
      },
      arg("q"), arg("scale"), arg("zero"), "x = (q - zero) * scale as float32.");

  k.def(
      "q8_conv2d_dynamic",
      [](const pyb::object& x_obj, const pyb::object& w_obj, const pyb::object& w_scale, const pyb::object& bias,
         std::vector<int64_t> strides, std::vector<int64_t> dilations, std::vector<int64_t> pads, int64_t groups,
         const std::string& act, float alpha, const pyb::object& residual, const pyb::object& isa_obj, int threads,
         const pyb::object& out) {
        pyb::array x = c_contig<float>(x_obj, "x", 4);
        pyb::array wa = c_contig<int8_t>(w_obj, "wq", 4);
        if (groups < 1) bad("groups must be >= 1");
        const kernels::Conv2dShape s =
            conv_shape_arg(x, wa.shape(0), wa.shape(1), wa.shape(2), groups, strides, dilations, pads);
        const int64_t Cg = wa.shape(3);
        if (s.O % groups) bad("groups must divide the output channels");
        if (s.C != Cg * groups)
          bad("x has " + std::to_string(s.C) + " channels, the weights expect " + std::to_string(Cg * groups));
        if (s.N < 1 || s.H < 1 || s.W < 1 || s.C < 1 || s.O < 1 || s.KH < 1 || s.KW < 1)
          bad("x and wq must have non-zero shapes");
        check_conv_geometry(s);
        Isa isa = isa_arg(isa_obj);
        const int t = threads_arg(threads);
        pyb::array keep_s, keep_b, res;
        const float* wsp = vec_arg(w_scale, "w_scale", s.O, &keep_s, true);
        Epilogue ep;
        ep.bias = vec_arg(bias, "bias", s.O, &keep_b);
        ep.act = act_arg(act);
        ep.alpha = alpha;
        pyb::array y = conv_output_args(s, residual, out, &ep, &res);
        const float* xp = static_cast<const float*>(x.data());
        const int8_t* wp = static_cast<const int8_t*>(wa.data());
        float* yp = static_cast<float*>(y.mutable_data());
        {
          pyb::gil_scoped_release nogil;
          auto pw = kernels::pack_q8_conv2d(wp, s.O, s.KH, s.KW, Cg, groups, isa);
          AlignedPtr<char> ws = aligned_array<char>(kernels::q8_conv2d_workspace(s, t));
          kernels::q8_conv2d_dynamic(s, xp, *pw, wsp, yp, ep, ws.get(), t);
        }
        return y;
      },
      arg("x"), arg("wq"), arg("w_scale"), arg("bias") = pyb::none(), arg("strides") = std::vector<int64_t>{1, 1},
      arg("dilations") = std::vector<int64_t>{1, 1}, arg("pads") = std::vector<int64_t>{0, 0, 0, 0},
      arg("groups") = 1, arg("act") = "none", arg("alpha") = 0.0f, arg("residual") = pyb::none(),
      arg("isa") = pyb::none(), arg("threads") = 1, arg("out") = pyb::none(),
      "int8 NHWC conv2d with per-image dynamic activation quantization: x float32 [N,H,W,C], "
      "wq int8 [O,KH,KW,C/groups], w_scale [O] -> float32 [N,OH,OW,O].");
}

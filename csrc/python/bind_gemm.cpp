// slimrt._core.kernels: fp32 GEMM, conv2d and activation kernels.
// Glue only: checks dtypes/shapes/strides (InputError), releases the GIL, calls the kernels.
// Arrays are never converted: float32 is required. 2-D operands may be row-strided
// views (unit stride along the last axis); weights and conv tensors must be C-contiguous.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/threadpool.h"
#include "kernels/gemm/conv2d.h"
#include "kernels/gemm/sgemm.h"
#include "python/args.h"
#include "python/bind.h"

namespace slimrt::py {
namespace {

using slimrt::Act;
using kernels::PackedSgemmB;
using namespace args;

// A packed weight handle: the weights are packed once, run() times only the GEMM.
struct PyPackedSgemm {
  std::unique_ptr<PackedSgemmB> b;

  pyb::array run(const pyb::object& a_obj, const pyb::object& bias, const std::string& act, float alpha,
                 const pyb::object& scale, const pyb::object& residual, int threads, const pyb::object& out,
                 int repeat = 1) {
    Mat<float> a = as_mat<float>(a_obj, "a");
    if (a.cols != b->K) bad("a must have shape (M, " + std::to_string(b->K) + ")");
    EpArgs e = epilogue_args(a.rows, b->N, bias, scale, residual, act, alpha);
    Mat<float> c = out_mat<float>(out, a.rows, b->N);
    threads = threads_arg(threads);
    repeat = repeat_arg(repeat);
    {
      pyb::gil_scoped_release nogil;
      for (int r = 0; r < repeat; ++r) kernels::sgemm(a.rows, a.ptr, a.ld, *b, c.ptr, c.ld, e.ep, threads);
    }
    return c.arr;
  }
};

std::unique_ptr<PackedSgemmB> pack_w(const pyb::object& w_obj, Isa isa) {
  pyb::array w = c_contig<float>(w_obj, "w", 2);
  const float* p = static_cast<const float*>(w.data());
  const int64_t N = w.shape(0), K = w.shape(1);
  pyb::gil_scoped_release nogil;
  return kernels::pack_sgemm_b(p, N, K, isa);
}

// Packed conv weights; run() validates the input against them and convolves.
struct PyPackedConv2d {
  std::unique_ptr<kernels::PackedConv2d> w;

  void pack(const pyb::object& w_obj, int64_t groups, Isa isa, const std::string& path = "auto") {
    pyb::array wa = c_contig<float>(w_obj, "w", 4);
    if (groups < 1) bad("groups must be >= 1");
    const int64_t O = wa.shape(0), KH = wa.shape(1), KW = wa.shape(2), Cg = wa.shape(3);
    if (O < 1 || KH < 1 || KW < 1 || Cg < 1) bad("w must have a non-zero shape (O, KH, KW, C/groups)");
    if (O % groups) bad("groups must divide the output channels");
    kernels::ConvPath cp = kernels::ConvPath::Auto;
    if (path == "alternative") cp = kernels::ConvPath::Alternative;
    else if (path == "winograd") cp = kernels::ConvPath::Winograd;
    else if (path != "auto") bad("path must be 'auto', 'alternative' or 'winograd'");
    const float* p = static_cast<const float*>(wa.data());
    {
      pyb::gil_scoped_release nogil;
      w = kernels::pack_conv2d(p, O, KH, KW, Cg, groups, isa, cp);
    }
    if (!w) bad("no '" + path + "' path for these weights on this ISA");
  }

  pyb::array run(const pyb::object& x_obj, const pyb::object& bias, std::vector<int64_t> strides,
                 std::vector<int64_t> dilations, std::vector<int64_t> pads, const std::string& act, float alpha,
                 const pyb::object& residual, int threads, const pyb::object& out) {
    pyb::array x = c_contig<float>(x_obj, "x", 4);
    const kernels::Conv2dShape s = conv_shape_arg(x, w->O, w->KH, w->KW, w->groups, strides, dilations, pads);
    if (s.C != w->Cg * w->groups)
      bad("x has " + std::to_string(s.C) + " channels, the weights expect " + std::to_string(w->Cg * w->groups));
    if (s.H < 1 || s.W < 1) bad("x must have a non-zero spatial size");
    check_conv_geometry(s);
    threads = threads_arg(threads);
    Epilogue ep;
    pyb::array keep_bias, res;
    ep.bias = vec_arg(bias, "bias", s.O, &keep_bias);
    ep.act = act_arg(act);
    ep.alpha = alpha;
    pyb::array y = conv_output_args(s, residual, out, &ep, &res);
    const float* xp = static_cast<const float*>(x.data());
    float* yp = static_cast<float*>(y.mutable_data());
    {
      pyb::gil_scoped_release nogil;
      AlignedPtr<char> ws = aligned_array<char>(kernels::conv2d_workspace_bytes(s, *w, threads));
      kernels::conv2d(s, xp, *w, yp, ep, ws.get(), threads);
    }
    return y;
  }
};

}  // namespace
}  // namespace slimrt::py

SLIMRT_PY_BIND(gemm) {
  using namespace slimrt;
  using namespace slimrt::py;
  namespace pyb = pybind11;
  using pyb::arg;
  pyb::module_ k = m.def_submodule("kernels", "Low-level compute kernels (for tests and benchmarks).");

  pyb::class_<PyPackedSgemm>(k, "PackedSgemm",
                             "fp32 weights w[N, K] packed once for one ISA's GEMM microkernel.")
      .def(pyb::init([](const pyb::object& w, const pyb::object& isa) {
             auto p = std::make_unique<PyPackedSgemm>();
             p->b = pack_w(w, isa_arg(isa));
             return p;
           }),
           arg("w"), arg("isa") = pyb::none())
      .def_property_readonly("N", [](const PyPackedSgemm& p) { return p.b->N; })
      .def_property_readonly("K", [](const PyPackedSgemm& p) { return p.b->K; })
      .def_property_readonly("isa", [](const PyPackedSgemm& p) { return std::string(isa_name(p.b->isa)); })
      .def_property_readonly("nr", [](const PyPackedSgemm& p) { return p.b->nr; })
      .def("run", &PyPackedSgemm::run, arg("a"), arg("bias") = pyb::none(), arg("act") = "none",
           arg("alpha") = 0.0f, arg("scale") = pyb::none(), arg("residual") = pyb::none(), arg("threads") = 1,
           arg("out") = pyb::none(), arg("repeat") = 1,
           "act(a @ w.T * scale + bias + residual) as float32 [M, N]. repeat: run the GEMM that many times in "
           "this call (benchmarks: the kernel's time without the call's own).");

  k.def(
      "sgemm",
      [](const pyb::object& a, const pyb::object& w, const pyb::object& bias, const std::string& act, float alpha,
         const pyb::object& scale, const pyb::object& residual, const pyb::object& isa, int threads,
         const pyb::object& out) {
        PyPackedSgemm p;
        p.b = pack_w(w, isa_arg(isa));
        return p.run(a, bias, act, alpha, scale, residual, threads, out);
      },
      arg("a"), arg("w"), arg("bias") = pyb::none(), arg("act") = "none", arg("alpha") = 0.0f,
      arg("scale") = pyb::none(), arg("residual") = pyb::none(), arg("isa") = pyb::none(), arg("threads") = 1,
      arg("out") = pyb::none(),
      "act(a[M,K] @ w[N,K].T * scale + bias + residual) in float32 (packs w, then runs).");

  k.def(
      "sgemm_nn",
      [](const pyb::object& a_obj, const pyb::object& b_obj, bool trans_b, const pyb::object& isa_obj,
         int threads, const pyb::object& out) {
        Mat<float> a = as_mat<float>(a_obj, "a");
        Mat<float> b = as_mat<float>(b_obj, "b");
        const int64_t K = trans_b ? b.cols : b.rows, N = trans_b ? b.rows : b.cols;
        if (a.cols != K) bad("inner dimensions of a and b do not match");
        Isa isa = isa_arg(isa_obj);
        threads = threads_arg(threads);
        Mat<float> c = out_mat<float>(out, a.rows, N);
        {
          pyb::gil_scoped_release nogil;
          Epilogue ep;
          kernels::sgemm_nn(a.rows, N, K, a.ptr, a.ld, b.ptr, b.ld, trans_b, c.ptr, c.ld, ep, isa, threads);
        }
        return c.arr;
      },
      arg("a"), arg("b"), arg("trans_b") = false, arg("isa") = pyb::none(), arg("threads") = 1,
      arg("out") = pyb::none(), "a[M,K] @ b[K,N] (or a @ b[N,K].T with trans_b=True), float32.");

  pyb::class_<PyPackedConv2d>(k, "PackedConv2d",
                              "fp32 conv weights w[O, KH, KW, C/groups] packed once for one ISA.")
      .def(pyb::init([](const pyb::object& w, int64_t groups, const pyb::object& isa, const std::string& path) {
             auto p = std::make_unique<PyPackedConv2d>();
             p->pack(w, groups, isa_arg(isa), path);
             return p;
           }),
           arg("w"), arg("groups") = 1, arg("isa") = pyb::none(), arg("path") = "auto",
           "path: 'auto' (the shape rule), 'alternative' (the other of direct / GEMM) or 'winograd' (3x3, groups 1; "
           "run with stride 1 and dilation 1)")
      .def_property_readonly("isa", [](const PyPackedConv2d& p) { return std::string(isa_name(p.w->isa)); })
      .def_property_readonly("path", [](const PyPackedConv2d& p) { return std::string(kernels::conv2d_path(*p.w)); })
      .def("run", &PyPackedConv2d::run, arg("x"), arg("bias") = pyb::none(),
           arg("strides") = std::vector<int64_t>{1, 1}, arg("dilations") = std::vector<int64_t>{1, 1},
           arg("pads") = std::vector<int64_t>{0, 0, 0, 0}, arg("act") = "none", arg("alpha") = 0.0f,
           arg("residual") = pyb::none(), arg("threads") = 1, arg("out") = pyb::none(),
           "NHWC conv2d with the packed weights: x[N,H,W,C] -> act(conv + bias + residual) [N,OH,OW,O].");

  k.def(
      "conv2d",
      [](const pyb::object& x, const pyb::object& w, const pyb::object& bias, std::vector<int64_t> strides,
         std::vector<int64_t> dilations, std::vector<int64_t> pads, int64_t groups, const std::string& act,
         float alpha, const pyb::object& residual, const pyb::object& isa, int threads, const pyb::object& out,
         const std::string& path) {
        PyPackedConv2d p;
        p.pack(w, groups, isa_arg(isa), path);
        return p.run(x, bias, std::move(strides), std::move(dilations), std::move(pads), act, alpha, residual,
                     threads, out);
      },
      arg("x"), arg("w"), arg("bias") = pyb::none(), arg("strides") = std::vector<int64_t>{1, 1},
      arg("dilations") = std::vector<int64_t>{1, 1}, arg("pads") = std::vector<int64_t>{0, 0, 0, 0},
      arg("groups") = 1, arg("act") = "none", arg("alpha") = 0.0f, arg("residual") = pyb::none(),
      arg("isa") = pyb::none(), arg("threads") = 1, arg("out") = pyb::none(), arg("path") = "auto",
      "NHWC conv2d: x[N,H,W,C], w[O,KH,KW,C/groups] -> act(conv + bias + residual) [N,OH,OW,O] (packs w, then runs; "
      "path as for PackedConv2d).");

  k.def(
      "apply_act",
      [](const pyb::object& x_obj, const std::string& act, float alpha, const pyb::object& isa_obj) {
        pyb::array x = typed<float>(x_obj, "x");
        Act a = act_arg(act);
        Isa isa = isa_arg(isa_obj);
        // A fresh C-contiguous copy, then in place.
        pyb::array_t<float> y(std::vector<pyb::ssize_t>(x.shape(), x.shape() + x.ndim()));
        pyb::object copyto = pyb::module_::import("numpy").attr("copyto");
        copyto(y, x);
        float* p = y.mutable_data();
        const int64_t n = y.size();
        {
          pyb::gil_scoped_release nogil;
          kernels::apply_act_inplace(p, n, a, alpha, isa);
        }
        return y;
      },
      arg("x"), arg("act"), arg("alpha") = 0.0f, arg("isa") = pyb::none(),
      "A new float32 array act(x).");
}

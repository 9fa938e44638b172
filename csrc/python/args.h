// Argument checks shared by the kernel bindings (bind_gemm, bind_spmm, bind_qgemm):
// numpy arrays of one dtype, 2-D matrices with unit column stride, output arrays,
// vectors, activations, thread counts and the fused epilogue. Every failure raises
// slimrt.InputError (Code::InvalidArgument) naming the argument.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "core/threadpool.h"
#include "kernels/act.h"
#include "kernels/gemm/conv2d.h"
#include "kernels/gemm/sgemm.h"
#include "python/bind.h"

namespace slimrt::py::args {

[[noreturn]] inline void bad(const std::string& msg) { throw Error(Code::InvalidArgument, msg); }

template <typename T>
const char* dtype_name() {
  if (std::is_same<T, float>::value) return "float32";
  if (std::is_same<T, uint8_t>::value) return "uint8";
  if (std::is_same<T, int8_t>::value) return "int8";
  return "int32";
}

// A numpy array of dtype T (no conversion).
template <typename T>
pyb::array typed(const pyb::object& o, const char* name) {
  if (!pyb::isinstance<pyb::array>(o)) bad(std::string(name) + " must be a numpy array");
  pyb::array a = pyb::reinterpret_borrow<pyb::array>(o);
  if (!a.dtype().is(pyb::dtype::of<T>()))
    bad(std::string(name) + " must have dtype " + dtype_name<T>() + ", got " + std::string(pyb::str(a.dtype())));
  return a;
}

// A 2-D matrix with unit column stride; rows `ld` elements apart.
template <typename T>
struct Mat {
  pyb::array arr;
  T* ptr = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
};

template <typename T>
Mat<T> as_mat(const pyb::object& o, const char* name, bool writable = false) {
  pyb::array a = typed<T>(o, name);
  if (a.ndim() != 2) bad(std::string(name) + " must be 2-D");
  if (writable && !a.writeable()) bad(std::string(name) + " must be writable");
  const int64_t r = a.shape(0), c = a.shape(1), es = sizeof(T);
  const int64_t s0 = a.strides(0), s1 = a.strides(1);
  if (c > 1 && s1 != es) bad(std::string(name) + " must have contiguous rows (unit stride on the last axis)");
  if (r > 1 && (s0 < 0 || s0 % es || s0 / es < c))
    bad(std::string(name) + " must have non-negative, element-aligned row strides >= its width");
  Mat<T> m;
  m.arr = a;
  m.ptr = static_cast<T*>(const_cast<void*>(a.data()));
  m.rows = r;
  m.cols = c;
  m.ld = r > 1 ? s0 / es : std::max<int64_t>(c, 1);
  return m;
}

// Output [M][N]: a new array, or the caller's writable view.
template <typename T>
Mat<T> out_mat(const pyb::object& out, int64_t M, int64_t N) {
  if (out.is_none()) {
    pyb::array_t<T> a({M, N});
    return as_mat<T>(a, "out", true);
  }
  Mat<T> m = as_mat<T>(out, "out", true);
  if (m.rows != M || m.cols != N)
    bad("out must have shape (" + std::to_string(M) + ", " + std::to_string(N) + ")");
  return m;
}

template <typename T>
pyb::array c_contig(const pyb::object& o, const char* name, int ndim) {
  pyb::array a = typed<T>(o, name);
  if (a.ndim() != ndim) bad(std::string(name) + " must be " + std::to_string(ndim) + "-D");
  if (!(a.flags() & pyb::array::c_style)) bad(std::string(name) + " must be C-contiguous");
  return a;
}

// An optional float vector of length n (null when None unless required); `keep` holds it alive.
inline const float* vec_arg(const pyb::object& o, const char* name, int64_t n, pyb::array* keep,
                            bool required = false) {
  if (o.is_none()) {
    if (required) bad(std::string(name) + " is required");
    return nullptr;
  }
  *keep = c_contig<float>(o, name, 1);
  if (keep->shape(0) != n) bad(std::string(name) + " must have length " + std::to_string(n));
  return static_cast<const float*>(keep->data());
}

inline Act act_arg(const std::string& name) {
  Act a;
  if (!kernels::parse_act(name.c_str(), &a)) bad("unknown activation '" + name + "'");
  return a;
}

// threads >= 0; 0 means the default thread count.
inline int threads_arg(int threads) {
  if (threads < 0) bad("threads must be >= 0 (0 = default)");
  return threads == 0 ? default_threads() : threads;
}

// Benchmark repeat count of a kernel binding's run(): >= 1. The kernel runs that many times on the
// same arguments inside one call (it is idempotent: the output never feeds its inputs), so a
// benchmark can time the kernel without the binding's own cost (argument checks, ~2-3 us a call).
inline int repeat_arg(int repeat) {
  if (repeat < 1) bad("repeat must be >= 1");
  return repeat;
}

// The fused epilogue of an [M][N] output: bias/scale vectors of N, a residual matrix [M][N].
struct EpArgs {
  Epilogue ep;
  pyb::array keep_bias, keep_scale;
  Mat<float> residual{};
};

inline EpArgs epilogue_args(int64_t M, int64_t N, const pyb::object& bias, const pyb::object& scale,
                            const pyb::object& residual, const std::string& act, float alpha) {
  EpArgs e;
  e.ep.bias = vec_arg(bias, "bias", N, &e.keep_bias);
  e.ep.scale = vec_arg(scale, "scale", N, &e.keep_scale);
  if (!residual.is_none()) {
    e.residual = as_mat<float>(residual, "residual");
    if (e.residual.rows != M || e.residual.cols != N)
      bad("residual must have shape (" + std::to_string(M) + ", " + std::to_string(N) + ")");
    e.ep.residual = e.residual.ptr;
    e.ep.ldr = e.residual.ld;
  }
  e.ep.act = act_arg(act);
  e.ep.alpha = alpha;
  return e;
}

// Convolution bindings (fp32, int8, CSR/LUT matrices): the shape of an NHWC x with these
// weights and geometry (strides 2, dilations 2, pads 4 values: top, left, bottom, right).
inline kernels::Conv2dShape conv_shape_arg(const pyb::array& x, int64_t O, int64_t KH, int64_t KW, int64_t groups,
                                           const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                                           const std::vector<int64_t>& pads) {
  if (strides.size() != 2 || dilations.size() != 2 || pads.size() != 4)
    bad("strides and dilations need 2 values, pads 4 (top, left, bottom, right)");
  kernels::Conv2dShape s;
  s.N = x.shape(0); s.H = x.shape(1); s.W = x.shape(2); s.C = x.shape(3);
  s.O = O; s.KH = KH; s.KW = KW;
  s.stride_h = strides[0]; s.stride_w = strides[1];
  s.dil_h = dilations[0]; s.dil_w = dilations[1];
  s.pad_t = pads[0]; s.pad_l = pads[1]; s.pad_b = pads[2]; s.pad_r = pads[3];
  s.groups = groups;
  return s;
}

// Strides and dilations >= 1, pads >= 0, and a non-empty output.
inline void check_conv_geometry(const kernels::Conv2dShape& s) {
  if (s.stride_h < 1 || s.stride_w < 1 || s.dil_h < 1 || s.dil_w < 1) bad("strides/dilations must be >= 1");
  for (int64_t p : {s.pad_t, s.pad_l, s.pad_b, s.pad_r}) if (p < 0) bad("pads must be >= 0");
  if (s.OH() < 1 || s.OW() < 1) bad("the kernel is larger than the padded input");
}

// The output-shaped residual (set into ep, kept in *keep_res) and the output array (out, or new).
inline pyb::array conv_output_args(const kernels::Conv2dShape& s, const pyb::object& residual, const pyb::object& out,
                                   Epilogue* ep, pyb::array* keep_res) {
  const int64_t OH = s.OH(), OW = s.OW();
  auto same = [&](const pyb::array& a) {
    return a.shape(0) == s.N && a.shape(1) == OH && a.shape(2) == OW && a.shape(3) == s.O;
  };
  if (!residual.is_none()) {
    *keep_res = c_contig<float>(residual, "residual", 4);
    if (!same(*keep_res)) bad("residual must have the output's shape");
    ep->residual = static_cast<const float*>(keep_res->data());
    ep->ldr = s.O;
  }
  if (out.is_none()) return pyb::array_t<float>({s.N, OH, OW, s.O});
  pyb::array y = c_contig<float>(out, "out", 4);
  if (!y.writeable()) bad("out must be writable");
  if (!same(y)) bad("out must have shape (N, OH, OW, O)");
  return y;
}

}  // namespace slimrt::py::args

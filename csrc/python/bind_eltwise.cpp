// slimrt._core.kernels: depthwise conv, pooling, activations, binary ops,
// softmax, layer norm, channel affine, transpose and pad (NHWC fp32 kernels of
// csrc/kernels/{eltwise,pool,dwconv}).
// Glue only: checks dtypes/shapes (InputError), releases the GIL, calls the
// drivers. Inputs must be float32 (transpose/pad: any 1/2/4/8-byte dtype); a
// non-contiguous input is copied to C order. `out=` must be a writable,
// C-contiguous float32 array of the result's shape (it may alias x where the
// kernel allows in-place: act, prelu, binary, softmax, layer_norm, channel_affine).
#include <cstring>
#include <string>
#include <vector>

#include "core/common.h"
#include "kernels/dwconv/dwconv.h"
#include "kernels/eltwise/eltwise.h"
#include "kernels/pool/pool.h"
#include "kernels/gemm/sgemm.h"
#include "python/bind.h"

namespace slimrt::py {
namespace {

using kernels::BinaryOp;
using kernels::PoolKind;

[[noreturn]] void bad(const std::string& msg) { throw Error(Code::InvalidArgument, msg); }

using Shape = std::vector<int64_t>;

Shape shape_of(const pyb::array& a) {
  Shape s(a.ndim());
  for (pyb::ssize_t i = 0; i < a.ndim(); ++i) s[i] = a.shape(i);
  return s;
}

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// A float32 input as a C-contiguous array (copied only when strided).
// Python numbers become 0-d float32 arrays; numpy scalars keep their dtype.
pyb::array in_f32(const pyb::object& o, const char* name) {
  pyb::array a;
  if (pyb::isinstance<pyb::array>(o)) {
    a = pyb::reinterpret_borrow<pyb::array>(o);
  } else if (pyb::isinstance<pyb::float_>(o) || pyb::isinstance<pyb::int_>(o)) {
    a = pyb::array_t<float>(std::vector<pyb::ssize_t>{});
    *static_cast<float*>(a.mutable_data()) = o.cast<float>();
  } else if (pyb::hasattr(o, "dtype") && pyb::hasattr(o, "shape")) {
    a = pyb::module_::import("numpy").attr("asarray")(o);
  } else {
    bad(std::string(name) + " must be a numpy array");
  }
  if (!a.dtype().is(pyb::dtype::of<float>()))
    bad(std::string(name) + " must have dtype float32, got " + std::string(pyb::str(a.dtype())));
  if (!(a.flags() & pyb::array::c_style)) a = pyb::array::ensure(a, pyb::array::c_style);
  return a;
}

const float* cptr(const pyb::array& a) { return static_cast<const float*>(a.data()); }

// Optional per-channel vector of exactly n floats.
const float* opt_vec(const pyb::object& o, const char* name, int64_t n, pyb::array* keep) {
  if (o.is_none()) return nullptr;
  *keep = in_f32(o, name);
  if (numel(shape_of(*keep)) != n) bad(std::string(name) + " must have " + std::to_string(n) + " elements");
  return cptr(*keep);
}

// The output array: a new one, or `out` after checking it.
pyb::array out_f32(const pyb::object& out, const Shape& shape) {
  if (out.is_none()) return pyb::array(pyb::dtype::of<float>(), shape);
  if (!pyb::isinstance<pyb::array>(out)) bad("out must be a numpy array");
  pyb::array a = pyb::reinterpret_borrow<pyb::array>(out);
  if (!a.dtype().is(pyb::dtype::of<float>())) bad("out must have dtype float32");
  if (!(a.flags() & pyb::array::c_style)) bad("out must be C-contiguous");
  if (!a.writeable()) bad("out must be writable");
  if (shape_of(a) != shape) {
    std::string s = "out has the wrong shape, expected (";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    bad(s + ")");
  }
  return a;
}

float* mptr(pyb::array& a) { return static_cast<float*>(a.mutable_data()); }

Act act_arg(const std::string& s) {
  Act a;
  if (!kernels::parse_act(s.c_str(), &a)) bad("unknown activation '" + s + "'");
  return a;
}

std::vector<int64_t> ints_arg(const pyb::object& o, size_t n, const char* name) {
  std::vector<int64_t> v;
  if (pyb::isinstance<pyb::int_>(o)) {
    v.assign(n, o.cast<int64_t>());
    return v;
  }
  try {
    v = o.cast<std::vector<int64_t>>();
  } catch (const pyb::cast_error&) {
    bad(std::string(name) + " must be an int or a sequence of ints");
  }
  if (v.size() != n) bad(std::string(name) + " must have " + std::to_string(n) + " values");
  return v;
}

// pads: one int, (ph, pw), or (top, left, bottom, right).
std::vector<int64_t> pads4(const pyb::object& o) {
  if (pyb::isinstance<pyb::int_>(o)) return std::vector<int64_t>(4, o.cast<int64_t>());
  std::vector<int64_t> v;
  try {
    v = o.cast<std::vector<int64_t>>();
  } catch (const pyb::cast_error&) {
    bad("pads must be an int or a sequence of 2 or 4 ints");
  }
  if (v.size() == 2) return {v[0], v[1], v[0], v[1]};
  if (v.size() != 4) bad("pads must have 2 or 4 values (top, left, bottom, right)");
  return v;
}

int small_int(int64_t v, const char* name) {
  if (v < -(1 << 20) || v > (1 << 20)) bad(std::string(name) + " out of range");
  return static_cast<int>(v);
}

int threads_arg(int t) { return t < 1 ? 1 : t; }

BinaryOp binop_arg(const std::string& s) {
  if (s == "add") return BinaryOp::Add;
  if (s == "sub") return BinaryOp::Sub;
  if (s == "mul") return BinaryOp::Mul;
  if (s == "div") return BinaryOp::Div;
  bad("unknown binary op '" + s + "' (add, sub, mul, div)");
}

PoolKind pool_arg(const std::string& s) {
  if (s == "max") return PoolKind::Max;
  if (s == "avg") return PoolKind::Avg;
  bad("pool kind must be 'max' or 'avg'");
}

// Generic (any 1/2/4/8-byte dtype) C-contiguous input.
pyb::array in_any(const pyb::object& o, const char* name) {
  pyb::array a;
  if (pyb::isinstance<pyb::array>(o)) a = pyb::reinterpret_borrow<pyb::array>(o);
  else if (pyb::hasattr(o, "dtype") && pyb::hasattr(o, "shape")) a = pyb::module_::import("numpy").attr("asarray")(o);
  else bad(std::string(name) + " must be a numpy array");
  const auto es = a.itemsize();
  if (es != 1 && es != 2 && es != 4 && es != 8) bad(std::string(name) + ": element size must be 1, 2, 4 or 8 bytes");
  if (a.dtype().kind() == 'O') bad(std::string(name) + ": object arrays are not supported");
  if (!(a.flags() & pyb::array::c_style)) a = pyb::array::ensure(a, pyb::array::c_style);
  return a;
}

}  // namespace

SLIMRT_PY_BIND(eltwise) {
  pyb::module_ k = pyb::hasattr(m, "kernels") ? m.attr("kernels").cast<pyb::module_>()
                                              : m.def_submodule("kernels", "Low-level compute kernels.");

  k.def("dwconv2d",
        [](const pyb::object& xo, const pyb::object& wo, const pyb::object& bo, const pyb::object& strides,
           const pyb::object& dilations, const pyb::object& pads, const std::string& act, float alpha,
           const pyb::object& isa_o, int threads, const pyb::object& out, const pyb::object& scale_o,
           const pyb::object& res_o) {
          Isa isa = isa_arg(isa_o);
          pyb::array x = in_f32(xo, "x"), w = in_f32(wo, "w");
          if (x.ndim() != 4) bad("x must be 4-D [N, H, W, C]");
          if (w.ndim() != 3) bad("w must be 3-D [KH, KW, C*mult]");
          kernels::DwConv2dShape s;
          s.n = x.shape(0); s.h = x.shape(1); s.w = x.shape(2); s.c = x.shape(3);
          s.kh = small_int(w.shape(0), "KH"); s.kw = small_int(w.shape(1), "KW");
          if (s.c <= 0 || w.shape(2) % s.c != 0) bad("w's last dim must be a multiple of C");
          s.mult = w.shape(2) / s.c;
          auto st = ints_arg(strides, 2, "strides"), dl = ints_arg(dilations, 2, "dilations");
          auto pd = pads4(pads);
          s.sh = small_int(st[0], "strides"); s.sw = small_int(st[1], "strides");
          s.dh = small_int(dl[0], "dilations"); s.dw = small_int(dl[1], "dilations");
          s.pt = small_int(pd[0], "pads"); s.pl = small_int(pd[1], "pads");
          s.pb = small_int(pd[2], "pads"); s.pr = small_int(pd[3], "pads");
          kernels::dwconv2d_output_size(s);
          const int64_t O = s.out_channels();
          pyb::array y = out_f32(out, {s.n, s.oh, s.ow, O});
          Epilogue ep;
          pyb::array kb, ks, kr;
          ep.bias = opt_vec(bo, "bias", O, &kb);
          ep.scale = opt_vec(scale_o, "scale", O, &ks);
          if (!res_o.is_none()) {
            kr = in_f32(res_o, "residual");
            if (shape_of(kr) != Shape{s.n, s.oh, s.ow, O}) bad("residual must have the output's shape");
            ep.residual = cptr(kr);
            ep.ldr = O;
          }
          ep.act = act_arg(act);
          ep.alpha = alpha;
          float* yp = mptr(y);
          {
            pyb::gil_scoped_release nogil;
            kernels::dwconv2d(s, cptr(x), cptr(w), ep, yp, isa, threads_arg(threads));
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("w"), pyb::arg("bias") = pyb::none(), pyb::arg("strides") = 1,
        pyb::arg("dilations") = 1, pyb::arg("pads") = 0, pyb::arg("act") = "none", pyb::arg("alpha") = 0.f,
        pyb::arg("isa") = pyb::none(), pyb::arg("threads") = 1, pyb::arg("out") = pyb::none(),
        pyb::arg("scale") = pyb::none(), pyb::arg("residual") = pyb::none(),
        "Depthwise conv2d, NHWC: x [N,H,W,C], w [KH,KW,C*mult] -> [N,OH,OW,C*mult];\n"
        "y = act(conv * scale + bias + residual). pads: int, (ph, pw) or (t, l, b, r).");

  k.def("pool2d",
        [](const pyb::object& xo, const std::string& kind, const pyb::object& kernel, const pyb::object& strides,
           const pyb::object& pads, bool ceil_mode, bool count_include_pad, const pyb::object& isa_o, int threads,
           const pyb::object& out) {
          Isa isa = isa_arg(isa_o);
          PoolKind pk = pool_arg(kind);
          pyb::array x = in_f32(xo, "x");
          if (x.ndim() != 4) bad("x must be 4-D [N, H, W, C]");
          kernels::Pool2dShape s;
          s.n = x.shape(0); s.h = x.shape(1); s.w = x.shape(2); s.c = x.shape(3);
          auto ks = ints_arg(kernel, 2, "kernel");
          auto st = strides.is_none() ? ks : ints_arg(strides, 2, "strides");
          auto pd = pads4(pads);
          s.kh = small_int(ks[0], "kernel"); s.kw = small_int(ks[1], "kernel");
          s.sh = small_int(st[0], "strides"); s.sw = small_int(st[1], "strides");
          s.pt = small_int(pd[0], "pads"); s.pl = small_int(pd[1], "pads");
          s.pb = small_int(pd[2], "pads"); s.pr = small_int(pd[3], "pads");
          s.ceil_mode = ceil_mode;
          s.count_include_pad = count_include_pad;
          kernels::pool2d_output_size(s);
          pyb::array y = out_f32(out, {s.n, s.oh, s.ow, s.c});
          float* yp = mptr(y);
          {
            pyb::gil_scoped_release nogil;
            kernels::pool2d(pk, cptr(x), yp, s, isa, threads_arg(threads));
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("kind") = "max", pyb::arg("kernel") = 2, pyb::arg("strides") = pyb::none(),
        pyb::arg("pads") = 0, pyb::arg("ceil_mode") = false, pyb::arg("count_include_pad") = true,
        pyb::arg("isa") = pyb::none(), pyb::arg("threads") = 1, pyb::arg("out") = pyb::none(),
        "Max/avg pooling, NHWC, PyTorch semantics (ceil_mode, count_include_pad); strides default to kernel.");

  k.def("global_pool",
        [](const pyb::object& xo, const std::string& kind, const pyb::object& isa_o, int threads,
           const pyb::object& out) {
          Isa isa = isa_arg(isa_o);
          PoolKind pk = pool_arg(kind);
          pyb::array x = in_f32(xo, "x");
          if (x.ndim() != 4) bad("x must be 4-D [N, H, W, C]");
          const int64_t n = x.shape(0), hw = x.shape(1) * x.shape(2), c = x.shape(3);
          if (hw == 0 || c == 0) bad("global_pool: empty spatial or channel extent");
          pyb::array y = out_f32(out, {n, c});
          float* yp = mptr(y);
          {
            pyb::gil_scoped_release nogil;
            kernels::global_pool(pk, cptr(x), yp, n, hw, c, isa, threads_arg(threads));
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("kind") = "avg", pyb::arg("isa") = pyb::none(), pyb::arg("threads") = 1,
        pyb::arg("out") = pyb::none(), "Global average/max pool: [N,H,W,C] -> [N,C].");

  k.def("act",
        [](const pyb::object& xo, const std::string& act, float alpha, const pyb::object& isa_o,
           const pyb::object& out, int threads) {
          Isa isa = isa_arg(isa_o);
          Act a = act_arg(act);
          pyb::array x = in_f32(xo, "x");
          pyb::array y = out_f32(out, shape_of(x));
          const int64_t n = numel(shape_of(x));
          float* yp = mptr(y);
          {
            pyb::gil_scoped_release nogil;
            kernels::act(cptr(x), yp, n, a, alpha, isa, threads_arg(threads));
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("act"), pyb::arg("alpha") = 0.f, pyb::arg("isa") = pyb::none(),
        pyb::arg("out") = pyb::none(), pyb::arg("threads") = 1,
        "y = act(x) elementwise; out=x runs in place.");

  k.def("prelu",
        [](const pyb::object& xo, const pyb::object& so, const pyb::object& isa_o, const pyb::object& out) {
          Isa isa = isa_arg(isa_o);
          pyb::array x = in_f32(xo, "x"), sl = in_f32(so, "slope");
          const Shape xs = shape_of(x);
          const int64_t n = numel(xs), ns = numel(shape_of(sl));
          const int64_t c = xs.empty() ? 1 : xs.back();
          if (ns != c && ns != n) bad("slope must have C (last dim) or x.size elements");
          pyb::array y = out_f32(out, xs);
          float* yp = mptr(y);
          if (n == 0) return y;
          {
            pyb::gil_scoped_release nogil;
            kernels::prelu(cptr(x), cptr(sl), ns, yp, n, isa);
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("slope"), pyb::arg("isa") = pyb::none(), pyb::arg("out") = pyb::none(),
        "y = x >= 0 ? x : x * slope; slope per channel (last axis) or full size.");

  k.def("binary",
        [](const std::string& op, const pyb::object& ao, const pyb::object& bo, const pyb::object& isa_o,
           const pyb::object& out, int threads) {
          Isa isa = isa_arg(isa_o);
          BinaryOp o = binop_arg(op);
          pyb::array a = in_f32(ao, "a"), b = in_f32(bo, "b");
          const Shape as = shape_of(a), bs = shape_of(b);
          if (as.size() > 6 || bs.size() > 6) bad("binary: rank must be <= 6");
          int64_t ys[6];
          int r = 0;
          if (!kernels::broadcast_shape(as.data(), static_cast<int>(as.size()), bs.data(),
                                        static_cast<int>(bs.size()), ys, &r))
            bad("binary: shapes do not broadcast");
          pyb::array y = out_f32(out, Shape(ys, ys + r));
          float* yp = mptr(y);
          {
            pyb::gil_scoped_release nogil;
            kernels::binary(o, cptr(a), as.data(), static_cast<int>(as.size()), cptr(b), bs.data(),
                            static_cast<int>(bs.size()), yp, isa, threads_arg(threads));
          }
          return y;
        },
        pyb::arg("op"), pyb::arg("a"), pyb::arg("b"), pyb::arg("isa") = pyb::none(), pyb::arg("out") = pyb::none(),
        pyb::arg("threads") = 1, "y = a op b (add, sub, mul, div) with numpy broadcasting, rank <= 6.");

  k.def("softmax",
        [](const pyb::object& xo, float scale, const pyb::object& mo, const pyb::object& isa_o,
           const pyb::object& out, int threads) {
          Isa isa = isa_arg(isa_o);
          pyb::array x = in_f32(xo, "x");
          const Shape xs = shape_of(x);
          if (xs.empty()) bad("softmax: x must have at least one dim");
          const int64_t n = xs.back(), rows = n ? numel(xs) / n : 0;
          kernels::SoftmaxMask mask;
          pyb::array mk;
          if (!mo.is_none()) {
            mk = in_f32(mo, "mask");
            Shape ms = shape_of(mk);
            if (ms.size() > xs.size() || ms.empty() || ms.back() != n)
              bad("mask must broadcast to x and have x's last dim");
            ms.insert(ms.begin(), xs.size() - ms.size(), 1);
            // Row dims where the mask varies (ms[d] == xs[d] != 1): when they form one block
            // [d0, d1) of x's non-trivial dims, mask row = (r / inner) % block; otherwise the
            // broadcast mask is materialised.
            const int nr = static_cast<int>(xs.size()) - 1;
            int d0 = -1, d1 = -1;
            bool one_block = true;
            for (int d = 0; d < nr; ++d) {
              if (ms[d] != 1 && ms[d] != xs[d]) bad("mask must broadcast to x");
              if (xs[d] == 1) continue;
              if (ms[d] != 1) {
                if (d0 < 0) d0 = d;
                else if (d1 >= 0) one_block = false;
              } else if (d0 >= 0 && d1 < 0) {
                d1 = d;
              }
            }
            if (d0 >= 0 && d1 < 0) d1 = nr;
            if (!one_block) {
              pyb::module_ np = pyb::module_::import("numpy");
              std::vector<pyb::ssize_t> full(xs.begin(), xs.end());
              mk = np.attr("ascontiguousarray")(np.attr("broadcast_to")(mk, pyb::cast(full)));
              mask.div = 1; mask.mod = rows > 0 ? rows : 1; mask.stride = n;
            } else if (d0 < 0) {
              mask.div = 1; mask.mod = 1; mask.stride = 0;
            } else {
              int64_t inner = 1, block = 1;
              for (int d = d1; d < nr; ++d) inner *= xs[d];
              for (int d = d0; d < d1; ++d) block *= xs[d];
              mask.div = inner > 0 ? inner : 1; mask.mod = block > 0 ? block : 1; mask.stride = n;
            }
            mask.data = cptr(mk);
          }
          pyb::array y = out_f32(out, xs);
          float* yp = mptr(y);
          {
            pyb::gil_scoped_release nogil;
            kernels::softmax(cptr(x), yp, rows, n, scale, mask, isa, threads_arg(threads));
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("scale") = 1.f, pyb::arg("mask") = pyb::none(), pyb::arg("isa") = pyb::none(),
        pyb::arg("out") = pyb::none(), pyb::arg("threads") = 1,
        "softmax(x * scale + mask) over the last axis; mask broadcasts to x (last dim = x's).");

  k.def("layer_norm",
        [](const pyb::object& xo, const pyb::object& go, const pyb::object& bo, float eps,
           const pyb::object& isa_o, const pyb::object& out, int threads) {
          Isa isa = isa_arg(isa_o);
          pyb::array x = in_f32(xo, "x");
          const Shape xs = shape_of(x);
          if (xs.empty()) bad("layer_norm: x must have at least one dim");
          const int64_t n = xs.back(), rows = n ? numel(xs) / n : 0;
          pyb::array kg, kb;
          const float* g = opt_vec(go, "gamma", n, &kg);
          const float* b = opt_vec(bo, "beta", n, &kb);
          pyb::array y = out_f32(out, xs);
          float* yp = mptr(y);
          {
            pyb::gil_scoped_release nogil;
            kernels::layer_norm(cptr(x), g, b, yp, rows, n, eps, isa, threads_arg(threads));
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("gamma") = pyb::none(), pyb::arg("beta") = pyb::none(), pyb::arg("eps") = 1e-5f,
        pyb::arg("isa") = pyb::none(), pyb::arg("out") = pyb::none(), pyb::arg("threads") = 1,
        "Layer norm over the last axis: (x - mean) / sqrt(var + eps) * gamma + beta.");

  k.def("channel_affine",
        [](const pyb::object& xo, const pyb::object& so, const pyb::object& to, const pyb::object& isa_o,
           const pyb::object& out, int threads) {
          Isa isa = isa_arg(isa_o);
          pyb::array x = in_f32(xo, "x");
          const Shape xs = shape_of(x);
          if (xs.empty()) bad("channel_affine: x must have at least one dim");
          const int64_t c = xs.back(), rows = c ? numel(xs) / c : 0;
          pyb::array ks, kt;
          const float* s = opt_vec(so, "s", c, &ks);
          const float* t = opt_vec(to, "t", c, &kt);
          pyb::array y = out_f32(out, xs);
          float* yp = mptr(y);
          {
            pyb::gil_scoped_release nogil;
            kernels::channel_affine(cptr(x), s, t, yp, rows, c, isa, threads_arg(threads));
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("s"), pyb::arg("t") = pyb::none(), pyb::arg("isa") = pyb::none(),
        pyb::arg("out") = pyb::none(), pyb::arg("threads") = 1,
        "y = x * s[c] + t[c] over the last axis (batch-norm inference).");

  k.def(
      "sum",
      [](const pyb::object& xo, const pyb::object& isa_o, int threads) {
        Isa isa = isa_arg(isa_o);
        pyb::array x = in_f32(xo, "x");
        const int64_t n = numel(shape_of(x));
        const float* p = cptr(x);
        pyb::gil_scoped_release nogil;
        return kernels::sum(p, n, isa, threads_arg(threads));
      },
      pyb::arg("x"), pyb::arg("isa") = pyb::none(), pyb::arg("threads") = 1,
      "Sum of every element (float64 result), each read once at full stream speed: one contiguous chunk "
      "per thread. The benchmarks time it as the memory roofline of kernels reading the same bytes.");

  k.def("transpose",
        [](const pyb::object& xo, const std::vector<int>& perm, const pyb::object& isa_o, int threads) {
          Isa isa = isa_arg(isa_o);
          pyb::array x = in_any(xo, "x");
          const Shape xs = shape_of(x);
          const int rank = static_cast<int>(xs.size());
          if (rank > 6) bad("transpose: rank must be <= 6");
          if (static_cast<int>(perm.size()) != rank) bad("transpose: perm must have one entry per dim");
          std::vector<bool> seen(rank, false);
          Shape ys(rank);
          for (int d = 0; d < rank; ++d) {
            if (perm[d] < 0 || perm[d] >= rank || seen[perm[d]]) bad("transpose: perm is not a permutation");
            seen[perm[d]] = true;
            ys[d] = xs[perm[d]];
          }
          pyb::array y(x.dtype(), ys);
          void* yp = y.mutable_data();
          const size_t es = static_cast<size_t>(x.itemsize());
          {
            pyb::gil_scoped_release nogil;
            kernels::transpose(x.data(), yp, xs.data(), perm.data(), rank, es, isa, threads_arg(threads));
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("perm"), pyb::arg("isa") = pyb::none(), pyb::arg("threads") = 1,
        "x.transpose(perm) as a new C-contiguous array (any 1/2/4/8-byte dtype).");

  k.def("pad",
        [](const pyb::object& xo, const std::vector<int64_t>& pads, const pyb::object& value,
           const pyb::object& isa_o, int threads) {
          isa_arg(isa_o);  // validated for a uniform signature; pad is ISA-independent
          pyb::array x = in_any(xo, "x");
          const Shape xs = shape_of(x);
          const int rank = static_cast<int>(xs.size());
          if (rank > 6) bad("pad: rank must be <= 6");
          if (static_cast<int>(pads.size()) != 2 * rank)
            bad("pad: pads must be [begin_0, .., begin_{r-1}, end_0, .., end_{r-1}] (ONNX order)");
          Shape ys(rank);
          for (int d = 0; d < rank; ++d) {
            ys[d] = xs[d] + pads[d] + pads[rank + d];
            if (ys[d] < 0) bad("pad: negative output size");
          }
          pyb::module_ np = pyb::module_::import("numpy");
          pyb::array v = np.attr("asarray")(value, x.dtype());
          if (v.size() != 1) bad("pad: value must be a scalar");
          char val[8] = {0};
          std::memcpy(val, v.data(), static_cast<size_t>(x.itemsize()));
          pyb::array y(x.dtype(), ys);
          void* yp = y.mutable_data();
          const size_t es = static_cast<size_t>(x.itemsize());
          {
            pyb::gil_scoped_release nogil;
            kernels::pad(x.data(), yp, xs.data(), pads.data(), pads.data() + rank, rank, val, es,
                         threads_arg(threads));
          }
          return y;
        },
        pyb::arg("x"), pyb::arg("pads"), pyb::arg("value") = 0, pyb::arg("isa") = pyb::none(),
        pyb::arg("threads") = 1,
        "Constant pad (negative pads crop); pads in ONNX order [begins..., ends...].");
}

}  // namespace slimrt::py

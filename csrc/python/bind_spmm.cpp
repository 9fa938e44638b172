// slimrt._core.kernels: compressed-domain weight kernels (CSR SpMM, codebook and
// log2 LUT GEMM) and their im2col convolutions. Glue only: checks dtypes/shapes
// (InputError), releases the GIL, calls the kernels. Arrays are never converted.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/threadpool.h"
#include "kernels/gemm/conv2d.h"
#include "kernels/gemm/sgemm.h"
#include "kernels/lutgemm/lutgemm.h"
#include "kernels/lutgemm/lutq8.h"
#include "kernels/spmm/spmm.h"
#include "python/args.h"
#include "python/bind.h"

namespace slimrt::py {
namespace {

using kernels::CsrType;
using namespace args;


pyb::array arr_arg(const pyb::object& o, const char* name) {
  if (!pyb::isinstance<pyb::array>(o)) bad(std::string(name) + " must be a numpy array");
  return pyb::reinterpret_borrow<pyb::array>(o);
}

template <typename T>
bool is(const pyb::array& a) { return a.dtype().is(pyb::dtype::of<T>()); }

pyb::array contig(const pyb::object& o, const char* name, int ndim) {
  pyb::array a = arr_arg(o, name);
  if (a.ndim() != ndim) bad(std::string(name) + " must be " + std::to_string(ndim) + "-D");
  if (!(a.flags() & pyb::array::c_style)) bad(std::string(name) + " must be C-contiguous");
  return a;
}

// Convolution arguments shared by the CSR and LUT matrices: x NHWC, the matrix [O][KH*KW*C/groups].
struct ConvArgs {
  kernels::Conv2dShape s;
  pyb::array x, y, keep_bias, keep_res;
  Epilogue ep;
};

ConvArgs conv_args(const pyb::object& x_obj, int64_t O, int64_t Kc, int64_t KH, int64_t KW,
                   const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                   const std::vector<int64_t>& pads, int64_t groups, const pyb::object& bias,
                   const std::string& act, float alpha, const pyb::object& residual, const pyb::object& out) {
  ConvArgs c;
  c.x = c_contig<float>(x_obj, "x", 4);
  c.s = conv_shape_arg(c.x, O, KH, KW, groups, strides, dilations, pads);
  const kernels::Conv2dShape& s = c.s;
  if (KH < 1 || KW < 1) bad("KH and KW must be >= 1");
  if (groups < 1 || s.C % groups || O % groups) bad("groups must divide the input and output channels");
  if (KH * KW * (s.C / groups) != Kc)
    bad("the matrix has " + std::to_string(Kc) + " columns, KH*KW*C/groups = " +
        std::to_string(KH * KW * (s.C / groups)));
  check_conv_geometry(s);
  c.ep.bias = vec_arg(bias, "bias", O, &c.keep_bias);
  if (!kernels::parse_act(act.c_str(), &c.ep.act)) bad("unknown activation '" + act + "'");
  c.ep.alpha = alpha;
  c.y = conv_output_args(s, residual, out, &c.ep, &c.keep_res);
  return c;
}

// The run / conv2d wrappers every compressed matrix class shares: P is the packed matrix,
// DWS/DENSE/CWS/CONV its kernels' workspace and entry points (same signatures per family).
template <class P, size_t (*DWS)(int64_t, const P&, int),
          void (*DENSE)(int64_t, const float*, int64_t, const P&, float*, int64_t, const Epilogue&, void*, int),
          size_t (*CWS)(const kernels::Conv2dShape&, const P&, int),
          void (*CONV)(const kernels::Conv2dShape&, const float*, const P&, float*, const Epilogue&, void*, int)>
struct PyMatrix {
  std::unique_ptr<P> w;

  pyb::array run(const pyb::object& x_obj, const pyb::object& bias, const std::string& act, float alpha,
                 const pyb::object& scale, const pyb::object& residual, int threads, const pyb::object& out,
                 int repeat) {
    Mat<float> x = as_mat<float>(x_obj, "x");
    if (x.cols != w->K) bad("x must have shape (M, " + std::to_string(w->K) + ")");
    EpArgs e = epilogue_args(x.rows, w->N, bias, scale, residual, act, alpha);
    Mat<float> y = out_mat<float>(out, x.rows, w->N);
    const int t = threads_arg(threads);
    repeat = repeat_arg(repeat);
    {
      pyb::gil_scoped_release nogil;
      AlignedPtr<char> ws = aligned_array<char>(DWS(x.rows, *w, t));
      for (int r = 0; r < repeat; ++r) DENSE(x.rows, x.ptr, x.ld, *w, y.ptr, y.ld, e.ep, ws.get(), t);
    }
    return y.arr;
  }

  pyb::array conv(const pyb::object& x, int64_t KH, int64_t KW, const std::vector<int64_t>& strides,
                  const std::vector<int64_t>& dilations, const std::vector<int64_t>& pads, int64_t groups,
                  const pyb::object& bias, const std::string& act, float alpha, const pyb::object& residual,
                  int threads, const pyb::object& out) {
    ConvArgs c = conv_args(x, w->N, w->K, KH, KW, strides, dilations, pads, groups, bias, act, alpha, residual, out);
    const int t = threads_arg(threads);
    const float* xp = static_cast<const float*>(c.x.data());
    float* yp = static_cast<float*>(c.y.mutable_data());
    {
      pyb::gil_scoped_release nogil;
      AlignedPtr<char> ws = aligned_array<char>(CWS(c.s, *w, t));
      CONV(c.s, xp, *w, yp, c.ep, ws.get(), t);
    }
    return c.y;
  }
};

constexpr const char* kRunDoc =
    "act(x @ W.T * scale + bias + residual) as float32 [M, N]. repeat: run the kernel that many times in this "
    "call (benchmarks: the kernel's time without the call's own).";

// ---- CSR ---------------------------------------------------------------------

struct PyCsr : PyMatrix<kernels::PackedCsr, kernels::csr_dense_workspace, kernels::csr_dense,
                       kernels::csr_conv2d_workspace, kernels::csr_conv2d> {
};

CsrType int_type(const pyb::array& a, const char* name, bool allow_u16, bool allow_i64) {
  if (allow_u16 && is<uint16_t>(a)) return CsrType::U16;
  if (is<int32_t>(a)) return CsrType::I32;
  if (allow_i64 && is<int64_t>(a)) return CsrType::I64;
  bad(std::string(name) + (allow_u16 ? " must be uint16 or int32" : " must be int32 or int64") + ", got " +
      std::string(pyb::str(a.dtype())));
}

std::unique_ptr<PyCsr> make_csr(const pyb::object& indptr_o, const pyb::object& indices_o,
                                const pyb::object& values_o, int64_t n_cols, const pyb::object& w_scale,
                                const pyb::object& isa_o, const pyb::object& table_o) {
  pyb::array indptr = contig(indptr_o, "indptr", 1), indices = contig(indices_o, "indices", 1);
  pyb::array values = contig(values_o, "values", 1);
  const CsrType pt = int_type(indptr, "indptr", false, true), it = int_type(indices, "indices", true, false);
  CsrType vt;
  if (is<float>(values)) vt = CsrType::F32;
  else if (is<int8_t>(values)) vt = CsrType::I8;
  else if (is<uint8_t>(values)) vt = CsrType::U8;
  else bad("values must be float32, int8 (QInt8 with w_scale) or uint8 codes (with table)");
  if ((vt == CsrType::U8) != !table_o.is_none()) bad("a table goes with uint8 codes, and only with them");
  if (indptr.shape(0) < 1) bad("indptr must hold rows + 1 entries");
  if (indices.shape(0) != values.shape(0)) bad("indices and values must have the same length (nnz)");
  const int64_t N = indptr.shape(0) - 1, nnz = indices.shape(0);
  pyb::array scale;
  const float* sp = nullptr;
  int64_t ns = 0;
  if (vt == CsrType::I8 || (vt == CsrType::U8 && !w_scale.is_none())) {
    if (w_scale.is_none()) bad("int8 values need w_scale (one value, or one per row)");
    scale = arr_arg(w_scale, "w_scale");
    if (!is<float>(scale) || !(scale.flags() & pyb::array::c_style) || scale.ndim() > 1)
      bad("w_scale must be a C-contiguous float32 scalar or 1-D array");
    sp = static_cast<const float*>(scale.data());
    ns = scale.size();
  } else if (!w_scale.is_none()) {
    bad("w_scale is only for int8 values or codes");
  }
  pyb::array table;
  int64_t trows = 0, tsize = 0;
  if (vt == CsrType::U8) {
    table = contig(table_o, "table", 2);
    if (!is<float>(table)) bad("table must be float32 [1 or rows, entries]");
    trows = table.shape(0);
    tsize = table.shape(1);
  }
  const Isa isa = isa_arg(isa_o);
  auto p = std::make_unique<PyCsr>();
  pyb::gil_scoped_release nogil;
  p->w = kernels::pack_csr(N, n_cols, indptr.data(), pt, indices.data(), it, nnz, values.data(), vt, sp, ns, isa,
                           vt == CsrType::U8 ? static_cast<const float*>(table.data()) : nullptr, trows, tsize);
  return p;
}

// ---- codebook / log2 --------------------------------------------------------

struct PyLut : PyMatrix<kernels::PackedLut, kernels::lut_dense_workspace, kernels::lut_dense,
                       kernels::lut_conv2d_workspace, kernels::lut_conv2d> {
};

const uint8_t* packed_arg(const pyb::object& o, const char* name, int64_t N, int64_t K, int bits, pyb::array* keep) {
  *keep = contig(o, name, 1);
  if (!is<uint8_t>(*keep)) bad(std::string(name) + " must be uint8 (codes packed LSB-first)");
  if (N < 0 || K < 0) bad("N and K must be >= 0");
  if (bits < 1 || bits > 8) bad("bits must be 1..8");
  const int64_t need = (N * K * bits + 7) / 8;
  if (keep->shape(0) != need)
    bad(std::string(name) + " must hold " + std::to_string(need) + " bytes for N*K codes at " +
        std::to_string(bits) + " bits");
  return static_cast<const uint8_t*>(keep->data());
}

// A codebook table argument: C-contiguous [per_row ? N : 1][lut_size], float32 (or int8 when allowed).
pyb::array lut_arg(const pyb::object& lut_o, bool per_row, int64_t N, bool allow_i8) {
  pyb::array lut = arr_arg(lut_o, "lut");
  if ((!is<float>(lut) && !(allow_i8 && is<int8_t>(lut))) || !(lut.flags() & pyb::array::c_style))
    bad(allow_i8 ? "lut must be a C-contiguous int8 or float32 array" : "lut must be a C-contiguous float32 array");
  const int64_t groups = per_row ? N : 1;
  if (lut.ndim() != 2 || lut.shape(0) != groups)
    bad("lut must have shape (" + std::to_string(groups) + ", lut_size)");
  return lut;
}

// A log2 scale argument: a C-contiguous float32 scalar or 1-D array.
pyb::array log2_scale_arg(const pyb::object& scale_o) {
  pyb::array sc = arr_arg(scale_o, "scale");
  if (!is<float>(sc) || !(sc.flags() & pyb::array::c_style) || sc.ndim() > 1)
    bad("scale must be a C-contiguous float32 scalar or 1-D array");
  return sc;
}

std::unique_ptr<PyLut> make_lut(const pyb::object& idx_o, const pyb::object& lut_o, int bits, int64_t N, int64_t K,
                                bool per_row, const pyb::object& isa_o) {
  pyb::array keep;
  const uint8_t* pk = packed_arg(idx_o, "packed_idx", N, K, bits, &keep);
  pyb::array lut = lut_arg(lut_o, per_row, N, false);
  const Isa isa = isa_arg(isa_o);
  auto p = std::make_unique<PyLut>();
  const float* lp = static_cast<const float*>(lut.data());
  pyb::gil_scoped_release nogil;
  p->w = kernels::pack_codebook(pk, N, K, bits, lp, lut.shape(1), per_row, isa);
  return p;
}

struct PyLog2 : PyLut {};  // a distinct Python class over the same kernels
template <typename T> struct type_tag { using type = T; };

// Log2 matrices for both LUT kernel families: Pack is pack_log2 or pack_lutq8_log2.
template <class Py, class Pack>
std::unique_ptr<Py> make_log2_with(const pyb::object& codes_o, const pyb::object& scale_o, int bits, int64_t N,
                                   int64_t K, const pyb::object& isa_o, Pack pack) {
  pyb::array keep;
  const uint8_t* pk = packed_arg(codes_o, "packed_codes", N, K, bits, &keep);
  pyb::array sc = log2_scale_arg(scale_o);
  const Isa isa = isa_arg(isa_o);
  auto p = std::make_unique<Py>();
  const float* sp = static_cast<const float*>(sc.data());
  const int64_t ns = sc.size();
  pyb::gil_scoped_release nogil;
  p->w = pack(pk, N, K, bits, sp, ns, isa);
  return p;
}

std::unique_ptr<PyLog2> make_log2(const pyb::object& codes_o, const pyb::object& scale_o, int bits, int64_t N,
                                  int64_t K, const pyb::object& isa_o) {
  return make_log2_with<PyLog2>(codes_o, scale_o, bits, N, K, isa_o, kernels::pack_log2);
}


// ---- int8-table LUT GEMM (lutq8.h) -------------------------------------------

struct PyLutQ8 : PyMatrix<kernels::PackedLutQ8, kernels::lutq8_dense_workspace, kernels::lutq8_dense,
                         kernels::lutq8_conv2d_workspace, kernels::lutq8_conv2d> {
  pyb::array run_acc(const pyb::object& aq_obj, int32_t a_zero, int threads, const pyb::object& out) {
    Mat<uint8_t> a = as_mat<uint8_t>(aq_obj, "aq");
    if (a.cols != w->K) bad("aq must have shape (M, " + std::to_string(w->K) + ")");
    if (a_zero < 0 || a_zero > 255) bad("a_zero must be in [0, 255]");
    Mat<int32_t> c = out_mat<int32_t>(out, a.rows, w->N);
    const int t = threads_arg(threads);
    {
      pyb::gil_scoped_release nogil;
      AlignedPtr<char> ws = aligned_array<char>(kernels::lutq8_dense_workspace(a.rows, *w, t));
      kernels::lutq8_gemm_acc(a.rows, a.ptr, a.ld, a_zero, *w, c.ptr, c.ld, ws.get(), t);
    }
    return c.arr;
  }


  // The int8 weight table [N][16] and the per-row float scale / int32 row sum.
  pyb::array table() const {
    pyb::array_t<int8_t> a({w->N, int64_t(16)});
    if (w->N) std::memcpy(a.mutable_data(), w->table.get(), size_t(w->N) * 16);
    return a;
  }
  pyb::array row_scale() const {
    pyb::array_t<float> a(w->N);
    if (w->N) std::memcpy(a.mutable_data(), w->row_scale.get(), sizeof(float) * w->N);
    return a;
  }
  pyb::array rowsum() const {
    pyb::array_t<int32_t> a(w->N);
    if (w->N) std::memcpy(a.mutable_data(), w->rowsum.get(), sizeof(int32_t) * w->N);
    return a;
  }
};

std::unique_ptr<PyLutQ8> make_lutq8_codebook(const pyb::object& idx_o, const pyb::object& lut_o, int bits, int64_t N,
                                             int64_t K, bool per_row, const pyb::object& isa_o) {
  pyb::array keep;
  const uint8_t* pk = packed_arg(idx_o, "packed_idx", N, K, bits, &keep);
  pyb::array lut = lut_arg(lut_o, per_row, N, true);
  const bool i8 = is<int8_t>(lut);
  const int64_t lut_size = lut.shape(1);
  const Isa isa = isa_arg(isa_o);
  auto p = std::make_unique<PyLutQ8>();
  const void* lp = lut.data();
  pyb::gil_scoped_release nogil;
  p->w = i8 ? kernels::pack_lutq8_codebook(pk, N, K, bits, static_cast<const int8_t*>(lp), lut_size, per_row, isa)
            : kernels::pack_lutq8_codebook_f32(pk, N, K, bits, static_cast<const float*>(lp), lut_size, per_row, isa);
  return p;
}

std::unique_ptr<PyLutQ8> make_lutq8_log2(const pyb::object& codes_o, const pyb::object& scale_o, int bits, int64_t N,
                                         int64_t K, const pyb::object& isa_o) {
  return make_log2_with<PyLutQ8>(codes_o, scale_o, bits, N, K, isa_o, kernels::pack_lutq8_log2);
}

}  // namespace
}  // namespace slimrt::py

SLIMRT_PY_BIND(spmm) {
  using namespace slimrt;
  using namespace slimrt::py;
  namespace pyb = pybind11;
  using pyb::arg;
  pyb::module_ k = pyb::hasattr(m, "kernels") ? m.attr("kernels").cast<pyb::module_>()
                                              : m.def_submodule("kernels", "Low-level compute kernels.");

  pyb::class_<PyCsr>(k, "CsrMatrix",
                     "A CSR weight matrix W[N, K] (rows = output channels) packed for one ISA's SpMM.\n"
                     "values float32, int8 with w_scale (w = w_scale[row] * q), or uint8 codes with a\n"
                     "table [1 or N, <= 16] (w = table[row][code] * w_scale[row] when given).")
      .def(pyb::init(&make_csr), arg("indptr"), arg("indices"), arg("values"), arg("n_cols"),
           arg("w_scale") = pyb::none(), arg("isa") = pyb::none(), arg("table") = pyb::none())
      .def_property_readonly("N", [](const PyCsr& p) { return p.w->N; })
      .def_property_readonly("K", [](const PyCsr& p) { return p.w->K; })
      .def_property_readonly("nnz", [](const PyCsr& p) { return p.w->nnz; })
      .def_property_readonly("nbytes", [](const PyCsr& p) { return p.w->bytes(); })
      .def_property_readonly("layout", [](const PyCsr& p) { return std::string(p.w->sell ? "sell" : "csr"); },
                             "\"sell\": the sliced-ELL batch-1 layout was built next to the CSR arrays (spmm.h)")
      .def_property_readonly("sell_nbytes", [](const PyCsr& p) { return p.w->sell_bytes(); },
                             "bytes of the sliced-ELL layout (0 without it)")
      .def_property_readonly("isa", [](const PyCsr& p) { return std::string(isa_name(p.w->isa)); })
      .def("run", &PyCsr::run, arg("x"), arg("bias") = pyb::none(), arg("act") = "none", arg("alpha") = 0.0f,
           arg("scale") = pyb::none(), arg("residual") = pyb::none(), arg("threads") = 1, arg("out") = pyb::none(),
           arg("repeat") = 1, kRunDoc)
      .def("conv2d", &PyCsr::conv, arg("x"), arg("KH"), arg("KW"), arg("strides") = std::vector<int64_t>{1, 1},
           arg("dilations") = std::vector<int64_t>{1, 1}, arg("pads") = std::vector<int64_t>{0, 0, 0, 0},
           arg("groups") = 1, arg("bias") = pyb::none(), arg("act") = "none", arg("alpha") = 0.0f,
           arg("residual") = pyb::none(), arg("threads") = 1, arg("out") = pyb::none(),
           "NHWC conv2d with this matrix as OHWI weights [O, KH*KW*C/groups] -> [N, OH, OW, O].");
}

SLIMRT_PY_BIND(lutgemm) {
  using namespace slimrt;
  using namespace slimrt::py;
  namespace pyb = pybind11;
  using pyb::arg;
  pyb::module_ k = pyb::hasattr(m, "kernels") ? m.attr("kernels").cast<pyb::module_>()
                                              : m.def_submodule("kernels", "Low-level compute kernels.");

  auto cls = [&](auto tag, const char* name, const char* doc) {
    using T = typename decltype(tag)::type;
    pyb::class_<T> c(k, name, doc);
    c.def_property_readonly("N", [](const T& p) { return p.w->N; })
        .def_property_readonly("K", [](const T& p) { return p.w->K; })
        .def_property_readonly("bits", [](const T& p) { return p.w->bits; })
        .def_property_readonly("storage_bits", [](const T& p) { return p.w->sb; })
        .def_property_readonly("nbytes", [](const T& p) { return p.w->bytes(); })
        .def_property_readonly("isa", [](const T& p) { return std::string(isa_name(p.w->isa)); })
        .def("run", [](T& p, const pyb::object& x, const pyb::object& bias, const std::string& act, float alpha,
                       const pyb::object& scale, const pyb::object& residual, int threads, const pyb::object& out,
                       int repeat) { return p.run(x, bias, act, alpha, scale, residual, threads, out, repeat); },
             arg("x"), arg("bias") = pyb::none(), arg("act") = "none", arg("alpha") = 0.0f,
             arg("scale") = pyb::none(), arg("residual") = pyb::none(), arg("threads") = 1,
             arg("out") = pyb::none(), arg("repeat") = 1, kRunDoc)
        .def("conv2d", [](T& p, const pyb::object& x, int64_t KH, int64_t KW, const std::vector<int64_t>& st,
                          const std::vector<int64_t>& dl, const std::vector<int64_t>& pd, int64_t groups,
                          const pyb::object& bias, const std::string& act, float alpha, const pyb::object& res,
                          int threads, const pyb::object& out) {
               return p.conv(x, KH, KW, st, dl, pd, groups, bias, act, alpha, res, threads, out);
             }, arg("x"), arg("KH"), arg("KW"), arg("strides") = std::vector<int64_t>{1, 1},
             arg("dilations") = std::vector<int64_t>{1, 1}, arg("pads") = std::vector<int64_t>{0, 0, 0, 0},
             arg("groups") = 1, arg("bias") = pyb::none(), arg("act") = "none", arg("alpha") = 0.0f,
             arg("residual") = pyb::none(), arg("threads") = 1, arg("out") = pyb::none(),
             "NHWC conv2d with this matrix as OHWI weights [O, KH*KW*C/groups] -> [N, OH, OW, O].");
    return c;
  };
  cls(type_tag<PyLut>{}, "LutMatrix", "Codebook weights W[n, k] = lut[g, idx[n, k]] (g = n when per_row, else 0), indices packed\n"
                   "LSB-first at `bits` (formats.pack_bits); repacked for one ISA's LUT-GEMM.")
      .def(pyb::init(&make_lut), arg("packed_idx"), arg("lut"), arg("bits"), arg("N"), arg("K"),
           arg("per_row") = false, arg("isa") = pyb::none())
      .def_property_readonly("per_row", [](const PyLut& p) { return p.w->per_row; });
  cls(type_tag<PyLog2>{}, "Log2Matrix", "log2 weights W[n, k] = scale[n] * (code == 0 ? 0 : sign * 2^-(mag-1)), codes packed\n"
                    "LSB-first at `bits` (2..8); scale has 1 or N values.")
      .def(pyb::init(&make_log2), arg("packed_codes"), arg("scale"), arg("bits"), arg("N"), arg("K"),
           arg("isa") = pyb::none());

  pyb::class_<PyLutQ8>(k, "LutQ8Matrix",
                       "<= 4-bit codebook / log2 weights decoded to int8 in registers (vpdpbusd), activations\n"
                       "quantized to u8 per row as q8 run_dynamic does. Build with LutQ8Matrix.codebook (int8 lut:\n"
                       "exact; float32 lut: centroids rounded to int8 per table, |error| <= max|lut row|/254) or\n"
                       "LutQ8Matrix.log2 (exact: int8 {0, +-64*2^-(mag-1)}, row scale = scale/64).")
      .def_static("codebook", &make_lutq8_codebook, arg("packed_idx"), arg("lut"), arg("bits"), arg("N"), arg("K"),
                  arg("per_row") = false, arg("isa") = pyb::none())
      .def_static("log2", &make_lutq8_log2, arg("packed_codes"), arg("scale"), arg("bits"), arg("N"), arg("K"),
                  arg("isa") = pyb::none())
      .def_static("has_kernel", [](const pyb::object& isa_o) { return kernels::lutq8_has_kernel(isa_arg(isa_o)); },
                  arg("isa") = pyb::none(), "True when the ISA has an int8-table kernel.")
      .def_property_readonly("N", [](const PyLutQ8& p) { return p.w->N; })
      .def_property_readonly("K", [](const PyLutQ8& p) { return p.w->K; })
      .def_property_readonly("bits", [](const PyLutQ8& p) { return p.w->bits; })
      .def_property_readonly("storage_bits", [](const PyLutQ8& p) { return p.w->sb; })
      .def_property_readonly("per_row", [](const PyLutQ8& p) { return p.w->per_row; })
      .def_property_readonly("is_log2", [](const PyLutQ8& p) { return p.w->log2; })
      .def_property_readonly("quantized", [](const PyLutQ8& p) { return p.w->quantized; })
      .def_property("vbmi", [](const PyLutQ8& p) { return p.w->vbmi; },
                    [](PyLutQ8& p, bool on) {
                      if (on && (p.w->per_row || p.w->isa < Isa::Avx512Vnni || !cpu_info().avx512vbmi))
                        throw Error(Code::InvalidArgument, "vbmi: needs one table for every row, an avx512vnni "
                                                           "matrix and a CPU with AVX512_VBMI");
                      p.w->vbmi = on;
                    },
                    "True: the vpermb decode (shared table, AVX512_VBMI CPU); set False for the vpshufb kernel")
      .def_property_readonly("nbytes", [](const PyLutQ8& p) { return p.w->bytes(); })
      .def_property_readonly("isa", [](const PyLutQ8& p) { return std::string(isa_name(p.w->isa)); })
      .def_property_readonly("table", &PyLutQ8::table, "int8 weight table per row [N, 16]")
      .def_property_readonly("row_scale", &PyLutQ8::row_scale, "float32 [N]: w = row_scale[n] * table[n, idx]")
      .def_property_readonly("rowsum", &PyLutQ8::rowsum, "int32 [N]: sum_k of the int8 weights of row n")
      .def("run", &PyLutQ8::run, arg("x"), arg("bias") = pyb::none(), arg("act") = "none", arg("alpha") = 0.0f,
           arg("scale") = pyb::none(), arg("residual") = pyb::none(), arg("threads") = 1, arg("out") = pyb::none(),
           arg("repeat") = 1,
           "act(float(acc) * a_scale[m] * row_scale[n] * scale[n] + bias + residual) as float32 [M, N]. repeat: "
           "run the kernel that many times in this call (benchmarks: the kernel's time without the call's own).")
      .def("run_acc", &PyLutQ8::run_acc, arg("aq"), arg("a_zero"), arg("threads") = 1, arg("out") = pyb::none(),
           "int32 [M, N]: sum_k (aq[m, k] - a_zero) * Wq[n, k] (Wq = table[n, idx[n, k]]).")
      .def("conv2d", &PyLutQ8::conv, arg("x"), arg("KH"), arg("KW"), arg("strides") = std::vector<int64_t>{1, 1},
           arg("dilations") = std::vector<int64_t>{1, 1}, arg("pads") = std::vector<int64_t>{0, 0, 0, 0},
           arg("groups") = 1, arg("bias") = pyb::none(), arg("act") = "none", arg("alpha") = 0.0f,
           arg("residual") = pyb::none(), arg("threads") = 1, arg("out") = pyb::none(),
           "NHWC conv2d with this matrix as OHWI weights [O, KH*KW*C/groups] -> [N, OH, OW, O]; the\n"
           "im2col rows (or pixels, for 1x1) are quantized per row.");
}

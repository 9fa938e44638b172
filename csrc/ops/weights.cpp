#include "ops/weights.h"

#include <array>
#include <cmath>
#include <vector>

#include "kernels/gemm/sgemm.h"
#include "kernels/lutgemm/lutgemm.h"
#include "kernels/lutgemm/lutq8.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/spmm/spmm.h"
#include "runtime/program.h"

namespace slimrt::ops {
namespace {

using kernels::Conv2dShape;

class Fp32Weights : public WeightMatrix {
 public:
  Fp32Weights(const float* w, const std::array<int64_t, 4>& d, int64_t groups, bool conv, Isa isa,
              kernels::ConvPath path = kernels::ConvPath::Auto) : isa_(isa) {
    if (conv) conv_ = kernels::pack_conv2d(w, d[0], d[1], d[2], d[3], groups, isa, path);
    else gemm_ = kernels::pack_sgemm_b(w, d[0], d[3], isa);
  }
  bool empty() const { return !conv_ && !gemm_; }
  void dense(int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy, const Epilogue& ep, void*,
             int threads) const override {
    kernels::sgemm(M, x, ldx, *gemm_, y, ldy, ep, threads);
  }
  size_t conv_workspace(const Conv2dShape& s, int threads) const override {
    return conv_ ? kernels::conv2d_workspace_bytes(s, *conv_, threads) : 0;
  }
  void conv(const Conv2dShape& s, const float* x, float* y, const Epilogue& ep, void* ws, int threads) const override {
    kernels::conv2d(s, x, *conv_, y, ep, ws, threads);
  }
  std::string name() const override { return std::string("sgemm_") + isa_name(isa_); }
  std::string conv_name(bool pointwise) const override {
    const std::string path = conv_ ? kernels::conv2d_path(*conv_) : "";
    if (path == "direct" || path == "winograd") return "conv_" + path + "_" + isa_name(isa_);
    return WeightMatrix::conv_name(pointwise);
  }
 private:
  Isa isa_;
  std::unique_ptr<kernels::PackedSgemmB> gemm_;
  std::unique_ptr<kernels::PackedConv2d> conv_;
};

class CsrWeights : public WeightMatrix {
 public:
  explicit CsrWeights(std::unique_ptr<kernels::PackedCsr> w) : w_(std::move(w)) {}
  size_t dense_workspace(int64_t M, int threads) const override { return kernels::csr_dense_workspace(M, *w_, threads); }
  void dense(int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy, const Epilogue& ep, void* ws,
             int threads) const override {
    kernels::csr_dense(M, x, ldx, *w_, y, ldy, ep, ws, threads);
  }
  size_t conv_workspace(const Conv2dShape& s, int threads) const override {
    return kernels::csr_conv2d_workspace(s, *w_, threads);
  }
  void conv(const Conv2dShape& s, const float* x, float* y, const Epilogue& ep, void* ws, int threads) const override {
    kernels::csr_conv2d(s, x, *w_, y, ep, ws, threads);
  }
  std::string name() const override {
    return std::string(w_->codes ? "csr_lut4_" : w_->int8 ? "csr_int8_" : "csr_f32_") + isa_name(w_->isa);
  }
 private:
  std::unique_ptr<kernels::PackedCsr> w_;
};

// Codebook / log2 weights on the LUT GEMM: the fp32-table kernel (lutgemm.h, any table, exact
// float equation) or the int8-table kernel (lutq8.h: <= 4-bit log2 and int8-lut codebooks, u8
// activations quantized per row like the int8 GEMM; picked by default where the ISA has it).
class LutWeights : public WeightMatrix {
 public:
  LutWeights(std::unique_ptr<kernels::PackedLut> w, int bits) : w_(std::move(w)), bits_(bits) {}
  LutWeights(std::unique_ptr<kernels::PackedLutQ8> q, int bits) : q_(std::move(q)), bits_(bits) {}
  size_t dense_workspace(int64_t M, int threads) const override {
    return q_ ? kernels::lutq8_dense_workspace(M, *q_, threads) : kernels::lut_dense_workspace(M, *w_, threads);
  }
  void dense(int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy, const Epilogue& ep, void* ws,
             int threads) const override {
    if (q_) kernels::lutq8_dense(M, x, ldx, *q_, y, ldy, ep, ws, threads);
    else kernels::lut_dense(M, x, ldx, *w_, y, ldy, ep, ws, threads);
  }
  size_t conv_workspace(const Conv2dShape& s, int threads) const override {
    return q_ ? kernels::lutq8_conv2d_workspace(s, *q_, threads) : kernels::lut_conv2d_workspace(s, *w_, threads);
  }
  void conv(const Conv2dShape& s, const float* x, float* y, const Epilogue& ep, void* ws, int threads) const override {
    if (q_) kernels::lutq8_conv2d(s, x, *q_, y, ep, ws, threads);
    else kernels::lut_conv2d(s, x, *w_, y, ep, ws, threads);
  }
  std::string name() const override {  // e.g. codebook4_avx2, log2q8_4_avx512vnni
    const bool log2 = q_ ? q_->log2 : w_->log2;
    return std::string(log2 ? "log2" : "codebook") + (q_ ? "q8_" : "") + std::to_string(bits_) + "_" +
           isa_name(q_ ? q_->isa : w_->isa) + (q_ && q_->vbmi ? "_vbmi" : "");
  }
 private:
  std::unique_ptr<kernels::PackedLut> w_;
  std::unique_ptr<kernels::PackedLutQ8> q_;
  int bits_;
};

// The int8-table LUT kernel runs a <= 4-bit weight when the ISA has a SIMD one (not the scalar
// reference) and K fits its exact int32 accumulation.
bool use_lutq8(const BuildContext& c, int bits, int64_t kk) {
  return c.isa != Isa::Scalar && kernels::lutq8_has_kernel(c.isa) && bits <= 4 && kk <= kernels::kQ8MaxK;
}

// int8 weights (w = scale[n] * q), activations quantized per row (dense) or per image (conv) at run time.
class Q8Weights : public WeightMatrix {
 public:
  Q8Weights(const TensorDef& t, const std::array<int64_t, 4>& d, int64_t groups, bool conv, Isa isa)
      : isa_(isa), k_(d[1] * d[2] * d[3]) {
    scale_ = aligned_array<float>(d[0]);
    for (int64_t n = 0; n < d[0]; ++n) scale_[n] = t.scale.as<float>()[t.axis < 0 ? 0 : n];
    const int8_t* q = t.data.as<int8_t>();
    if (conv) conv_ = kernels::pack_q8_conv2d(q, d[0], d[1], d[2], d[3], groups, isa);
    else gemm_ = kernels::pack_q8_b(q, d[0], k_, isa);
  }
  size_t dense_workspace(int64_t M, int threads) const override { return kernels::q8_dense_workspace(M, k_, threads); }
  void dense(int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy, const Epilogue& ep, void* ws,
             int threads) const override {
    kernels::q8_dense_dynamic(M, x, ldx, *gemm_, scale_.get(), y, ldy, ep, ws, threads);
  }
  size_t conv_workspace(const Conv2dShape& s, int threads) const override {
    return kernels::q8_conv2d_workspace(s, threads);
  }
  void conv(const Conv2dShape& s, const float* x, float* y, const Epilogue& ep, void* ws, int threads) const override {
    kernels::q8_conv2d_dynamic(s, x, *conv_, scale_.get(), y, ep, ws, threads);
  }
  std::string name() const override { return std::string("q8_dynamic_") + isa_name(isa_); }
 private:
  Isa isa_;
  int64_t k_;
  AlignedPtr<float> scale_;
  std::unique_ptr<kernels::PackedQ8B> gemm_;
  std::unique_ptr<kernels::PackedQ8Conv2d> conv_;
};

kernels::CsrType csr_type(DType t) {
  switch (t) {
    case DType::F32: return kernels::CsrType::F32;
    case DType::I8: return kernels::CsrType::I8;
    case DType::U16: return kernels::CsrType::U16;
    case DType::I32: return kernels::CsrType::I32;
    default: return kernels::CsrType::I64;
  }
}

// Codebook tables as floats ([groups][lut_size]).
std::vector<float> lut_floats(const TensorDef& t) {
  std::vector<float> lut(static_cast<size_t>(t.lut_groups * t.lut_size));
  for (size_t i = 0; i < lut.size(); ++i)
    lut[i] = t.lut_dtype == DType::I8 ? static_cast<float>(t.lut.as<int8_t>()[i]) : t.lut.as<float>()[i];
  return lut;
}

}  // namespace

// A CSR whose values are a <= 4-bit codebook with a float table, or <= 4-bit log2 codes, as
// uint8 codes + one 16-entry table (per row or shared) + the log2 row scale; null otherwise.
static std::unique_ptr<WeightMatrix> csr_code_weights(const TensorDef& t, int64_t n, int64_t kk, Isa isa) {
  const TensorDef& v = *t.values;
  const bool cb = v.format == TFormat::Codebook && v.lut_dtype == DType::F32 && v.lut_size <= kernels::kCsrMaxTable;
  const bool lg = v.format == TFormat::Log2 && (int64_t{1} << v.bits) <= kernels::kCsrMaxTable;
  if (!cb && !lg) return nullptr;
  std::vector<uint8_t> codes(static_cast<size_t>(t.nnz) + 1);
  for (int64_t j = 0; j < t.nnz; ++j) codes[j] = static_cast<uint8_t>(packed_code(v.data.data, j, v.bits));
  std::vector<float> table;
  int64_t rows = 1, size = 0;
  const float* scale = nullptr;
  int64_t n_scale = 0;
  if (cb) {
    rows = v.lut_groups;
    size = v.lut_size;
    table.assign(v.lut.as<float>(), v.lut.as<float>() + rows * size);
  } else {  // log2: sign * 2^-(mag-1), code 0 -> 0; the scale is the row scale
    size = int64_t{1} << v.bits;
    table.resize(static_cast<size_t>(size));
    const uint32_t sign = 1u << (v.bits - 1);
    for (uint32_t code = 0; code < static_cast<uint32_t>(size); ++code) {
      const uint32_t mag = code & (sign - 1);
      table[code] = mag == 0 ? 0.f : std::ldexp(code & sign ? -1.f : 1.f, -static_cast<int>(mag - 1));
    }
    scale = v.scale.as<float>();
    n_scale = v.axis < 0 ? 1 : n;
  }
  return std::make_unique<CsrWeights>(kernels::pack_csr(n, kk, t.indptr.data, csr_type(t.indptr_dtype),
                                                        t.indices.data, csr_type(t.indices_dtype), t.nnz,
                                                        codes.data(), kernels::CsrType::U8, scale, n_scale, isa,
                                                        table.data(), rows, size));
}

// compress(share=k, quant="int8") lists the codebooks whose tables it put on an int8 grid in
// metadata["int8_codebooks"] (one name per line): those run on the int8-table kernel (tables
// re-rounded to int8 per row, error <= max|entry| / 254, u8 activations, as an int8 layer).
static bool int8_codebook_hint(const ModelDef& m, const std::string& name) {
  auto it = m.metadata.find("int8_codebooks");
  if (it == m.metadata.end()) return false;
  const std::string& v = it->second;
  for (size_t pos = 0; pos <= v.size();) {
    size_t end = v.find('\n', pos);
    if (end == std::string::npos) end = v.size();
    if (v.compare(pos, end - pos, name) == 0 && end - pos == name.size()) return true;
    pos = end + 1;
  }
  return false;
}

// Non-depthwise convolutions the int8 kernels run slower than the fp32 direct conv: < 16 outputs per
// group (most of an int8 tile's 16+ columns empty) or taps of C % 4 != 0 channels (> 4, beyond the
// stems' row copies) with <= 32 outputs (gathered one by one). LeNet-5's 1->6 / 6->16 5x5 convs at batch
// 64: fp32 1.7-1.9x faster. The same rule keeps them out of static int8 chains (optimize.py _q8_layer_ok).
static bool q8_conv_loses(const std::array<int64_t, 4>& d, int64_t groups) {
  const int64_t og = d[0] / std::max<int64_t>(1, groups), cg = d[3];
  if (groups > 1 && cg == 1) return false;  // depthwise: its own int8 kernel
  return og < 16 || (cg > 4 && cg % 4 != 0 && og <= 32);
}

std::unique_ptr<WeightMatrix> make_conv_alternative(BuildContext& c, size_t input, const std::array<int64_t, 4>& d,
                                                    int64_t groups) {
  const Tensor& w = c.dense_constant(input);
  if (w.info.dtype != DType::F32) c.fail(Code::Format, "weight must be float");
  auto alt = std::make_unique<Fp32Weights>(w.as<float>(), d, groups, true, c.isa, kernels::ConvPath::Alternative);
  if (alt->empty()) return nullptr;
  return alt;
}

std::unique_ptr<WeightMatrix> make_conv_winograd(const float* w, const std::array<int64_t, 4>& d, Isa isa) {
  auto wino = std::make_unique<Fp32Weights>(w, d, 1, true, isa, kernels::ConvPath::Winograd);
  if (wino->empty()) return nullptr;
  return wino;
}

bool weight_is_dense_f32(const BuildContext& c, size_t input) {
  const TensorDef& t = c.tensor_def(input);
  return t.format == TFormat::Dense && t.dtype == DType::F32;
}

std::unique_ptr<WeightMatrix> make_weight_matrix(BuildContext& c, size_t input, const std::array<int64_t, 4>& d,
                                                 int64_t groups, bool conv, bool fp32_only) {
  const TensorDef& t = c.tensor_def(input);
  const int64_t n = d[0], kk = d[1] * d[2] * d[3];
  bool grouped = conv && groups > 1;
  try {
    if (fp32_only) {
      // fall through to the fp32 kernels below
    } else if (t.format == TFormat::Csr && !grouped) {
      const TensorDef& v = *t.values;
      bool native_vals = v.format == TFormat::Dense && v.dtype == DType::F32;
      bool int8_vals = v.format == TFormat::Int8;
      if (native_vals || int8_vals) {
        return std::make_unique<CsrWeights>(kernels::pack_csr(
            n, kk, t.indptr.data, csr_type(t.indptr_dtype), t.indices.data, csr_type(t.indices_dtype), t.nnz,
            v.data.data, int8_vals ? kernels::CsrType::I8 : kernels::CsrType::F32,
            int8_vals ? v.scale.as<float>() : nullptr, int8_vals ? (v.axis < 0 ? 1 : n) : 0, c.isa));
      }
      // <= 4-bit codebook (float table) or log2 values: the kernels run on the codes.
      if (auto cw = csr_code_weights(t, n, kk, c.isa)) return cw;
      // Other codebook/log2 values: decode the nnz values once, stay sparse.
      std::vector<float> vals(static_cast<size_t>(t.nnz));
      decode_csr_values(t, vals.data());
      return std::make_unique<CsrWeights>(kernels::pack_csr(n, kk, t.indptr.data, csr_type(t.indptr_dtype),
                                                            t.indices.data, csr_type(t.indices_dtype), t.nnz,
                                                            vals.data(), kernels::CsrType::F32, nullptr, 0, c.isa));
    }
    if (!fp32_only && t.format == TFormat::Int8 && (t.axis < 0 || t.axis == 0) && kk <= kernels::kQ8MaxK &&
        !(conv && q8_conv_loses(d, groups)))
      return std::make_unique<Q8Weights>(t, d, groups, conv, c.isa);
    bool lut_ok = !grouped || (n / groups) % 4 == 0;
    if (!fp32_only && t.format == TFormat::Codebook && lut_ok && (t.axis < 0 || t.axis == 0)) {
      if (t.lut_dtype == DType::I8 && use_lutq8(c, t.bits, kk))
        return std::make_unique<LutWeights>(kernels::pack_lutq8_codebook(t.data.data, n, kk, t.bits, t.lut.as<int8_t>(),
                                                                         t.lut_size, t.axis == 0, c.isa), t.bits);
      if (t.lut_dtype == DType::F32 && use_lutq8(c, t.bits, kk) && int8_codebook_hint(c.model, t.name))
        return std::make_unique<LutWeights>(kernels::pack_lutq8_codebook_f32(t.data.data, n, kk, t.bits,
                                                                             t.lut.as<float>(), t.lut_size,
                                                                             t.axis == 0, c.isa), t.bits);
      auto lut = lut_floats(t);
      return std::make_unique<LutWeights>(
          kernels::pack_codebook(t.data.data, n, kk, t.bits, lut.data(), t.lut_size, t.axis == 0, c.isa), t.bits);
    }
    if (!fp32_only && t.format == TFormat::Log2 && lut_ok && (t.axis < 0 || t.axis == 0)) {
      if (use_lutq8(c, t.bits, kk))
        return std::make_unique<LutWeights>(
            kernels::pack_lutq8_log2(t.data.data, n, kk, t.bits, t.scale.as<float>(), t.axis < 0 ? 1 : n, c.isa),
            t.bits);
      return std::make_unique<LutWeights>(
          kernels::pack_log2(t.data.data, n, kk, t.bits, t.scale.as<float>(), t.axis < 0 ? 1 : n, c.isa), t.bits);
    }
  } catch (const Error& e) {
    c.fail(Code::Format, std::string("weight '") + t.name + "': " + e.what());
  }
  const Tensor& w = c.dense_constant(input);  // dense (or a format without a native kernel here)
  if (w.info.dtype != DType::F32) c.fail(Code::Format, "weight must be float");
  return std::make_unique<Fp32Weights>(w.as<float>(), d, groups, conv, c.isa);
}

}  // namespace slimrt::ops

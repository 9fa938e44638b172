// Elementwise and normalisation ops: activation, prelu, add/sub/mul/div,
// softmax, batch_norm, layer_norm, transpose, pad.
#include <cmath>
#include <cstring>

#include "kernels/eltwise/eltwise.h"
#include "ops/common.h"
#include "runtime/op.h"

namespace slimrt {
namespace {

void same_shape(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) {
  ops::expect_f32(*in[0], "input");
  out[0] = {DType::F32, in[0]->shape};
}

// ---- activation ------------------------------------------------------------------
class ActivationOp : public Op {
 public:
  ActivationOp(BuildContext& c) : isa_(c.isa), act_(ops::parse_act(c)) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override { same_shape(in, out); }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    kernels::act(in[0]->as<float>(), out[0]->as<float>(), in[0]->numel(), act_.first, act_.second, isa_, ctx.threads);
  }
  std::string kernel_name() const override { return std::string("act_") + isa_name(isa_); }
 private:
  Isa isa_;
  std::pair<Act, float> act_;
};
SLIMRT_REGISTER_OP("activation", [](BuildContext& c) { return std::make_unique<ActivationOp>(c); });

// ---- prelu: slope per channel (last axis) or full size -----------------------------
class PreluOp : public Op {
 public:
  PreluOp(BuildContext& c) : isa_(c.isa) {
    const Tensor& s = c.dense_constant(1);
    if (s.info.dtype != DType::F32) c.fail(Code::Format, "slope must be float");
    slope_ = s.as<float>();
    len_ = s.numel();
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    same_shape(in, out);
    const auto& sh = in[0]->shape;
    bool per_channel = !sh.empty() && sh.back() == len_;
    bool per_sample = sh.size() > 1 && len_ == in[0]->numel() / std::max<int64_t>(1, sh[0]);
    if (len_ != 1 && !per_channel && !per_sample)
      shape_error("slope of " + std::to_string(len_) + " values does not fit input " + shape_str(sh));
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    int64_t n = in[0]->numel();
    const auto& sh = in[0]->shape();
    if (len_ == 1) {
      float s = slope_[0];
      const float* x = in[0]->as<float>();
      float* y = out[0]->as<float>();
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] >= 0 ? x[i] : x[i] * s;
    } else if (!sh.empty() && sh.back() == len_) {
      kernels::prelu(in[0]->as<float>(), slope_, len_, out[0]->as<float>(), n, isa_, ctx.threads);
    } else {  // one slope per element of a sample: apply per batch entry
      int64_t per = len_;
      for (int64_t b = 0; b < n / per; ++b)
        kernels::prelu(in[0]->as<float>() + b * per, slope_, per, out[0]->as<float>() + b * per, per, isa_, 1);
    }
  }
  bool reads_at_run(size_t i) const override { return i == 0; }
  std::string kernel_name() const override { return std::string("prelu_") + isa_name(isa_); }
 private:
  Isa isa_;
  const float* slope_;
  int64_t len_;
};
SLIMRT_REGISTER_OP("prelu", [](BuildContext& c) { return std::make_unique<PreluOp>(c); });

// ---- add / sub / mul / div with numpy broadcasting -----------------------------------
class BinaryOpNode : public Op {
 public:
  BinaryOpNode(BuildContext& c, kernels::BinaryOp op) : isa_(c.isa), op_(op) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    ops::expect_f32(*in[0], "a");
    ops::expect_f32(*in[1], "b");
    if (in[0]->shape.size() > kernels::kMaxRank || in[1]->shape.size() > kernels::kMaxRank)
      shape_error("elementwise ops support rank <= 6");
    out[0] = {DType::F32, broadcast_shapes(in[0]->shape, in[1]->shape)};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    const auto& a = in[0]->shape();
    const auto& b = in[1]->shape();
    kernels::binary(op_, in[0]->as<float>(), a.data(), static_cast<int>(a.size()), in[1]->as<float>(), b.data(),
                    static_cast<int>(b.size()), out[0]->as<float>(), isa_, ctx.threads);
  }
  std::string kernel_name() const override { return std::string("binary_") + isa_name(isa_); }
 private:
  Isa isa_;
  kernels::BinaryOp op_;
};
SLIMRT_REGISTER_OP("add", [](BuildContext& c) { return std::make_unique<BinaryOpNode>(c, kernels::BinaryOp::Add); });
SLIMRT_REGISTER_OP("sub", [](BuildContext& c) { return std::make_unique<BinaryOpNode>(c, kernels::BinaryOp::Sub); });
SLIMRT_REGISTER_OP("mul", [](BuildContext& c) { return std::make_unique<BinaryOpNode>(c, kernels::BinaryOp::Mul); });
SLIMRT_REGISTER_OP("div", [](BuildContext& c) { return std::make_unique<BinaryOpNode>(c, kernels::BinaryOp::Div); });

// ---- softmax over any axis (the last one runs on the row kernel) ----------------------
class SoftmaxOp : public Op {
 public:
  SoftmaxOp(BuildContext& c) : isa_(c.isa), axis_(c.node.attr_int("axis")) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    same_shape(in, out);
    normalize_axis(axis_, in[0]->shape.size(), "softmax");
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    const auto& s = in[0]->shape();
    int64_t a = normalize_axis(axis_, s.size(), "softmax");
    int64_t n = s[a], inner = 1;
    for (size_t d = a + 1; d < s.size(); ++d) inner *= s[d];
    if (n == 0) return;
    if (inner == 1) {
      kernels::softmax(in[0]->as<float>(), out[0]->as<float>(), in[0]->numel() / n, n, 1.f, kernels::SoftmaxMask{},
                       isa_, ctx.threads);
      return;
    }
    // Strided axis: plain loops (rare in practice).
    int64_t outer = in[0]->numel() / (n * inner);
    const float* x = in[0]->as<float>();
    float* y = out[0]->as<float>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const float* xp = x + o * n * inner + i;
        float* yp = y + o * n * inner + i;
        float m = -INFINITY, sum = 0.f;
        for (int64_t j = 0; j < n; ++j) m = std::max(m, xp[j * inner]);
        for (int64_t j = 0; j < n; ++j) sum += (yp[j * inner] = std::exp(xp[j * inner] - m));
        for (int64_t j = 0; j < n; ++j) yp[j * inner] /= sum;
      }
  }
  std::string kernel_name() const override { return std::string("softmax_") + isa_name(isa_); }
 private:
  Isa isa_;
  int64_t axis_;
};
SLIMRT_REGISTER_OP("softmax", [](BuildContext& c) { return std::make_unique<SoftmaxOp>(c); });

// ---- batch_norm (inference): y = x * s + t over the last axis --------------------------
class BatchNormOp : public Op {
 public:
  BatchNormOp(BuildContext& c) : isa_(c.isa) {
    const Tensor& g = c.dense_constant(1);
    c_ = g.numel();
    const float* gamma = ops::vector_constant(c, 1, c_, "gamma");
    const float* beta = ops::vector_constant(c, 2, c_, "beta");
    const float* mean = ops::vector_constant(c, 3, c_, "mean");
    const float* var = ops::vector_constant(c, 4, c_, "var");
    double eps = c.node.attr_float("epsilon");
    st_ = aligned_array<float>(2 * c_);
    for (int64_t i = 0; i < c_; ++i) {
      double s = gamma[i] / std::sqrt(static_cast<double>(var[i]) + eps);
      st_[i] = static_cast<float>(s);
      st_[c_ + i] = static_cast<float>(beta[i] - mean[i] * s);
    }
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    same_shape(in, out);
    if (in[0]->shape.empty() || in[0]->shape.back() != c_)
      shape_error("input " + shape_str(in[0]->shape) + " does not have " + std::to_string(c_) + " channels last");
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    kernels::channel_affine(in[0]->as<float>(), st_.get(), st_.get() + c_, out[0]->as<float>(), in[0]->numel() / c_, c_,
                            isa_, ctx.threads);
  }
  bool reads_at_run(size_t i) const override { return i == 0; }
  std::string kernel_name() const override { return std::string("channel_affine_") + isa_name(isa_); }
 private:
  Isa isa_;
  int64_t c_;
  AlignedPtr<float> st_;
};
SLIMRT_REGISTER_OP("batch_norm", [](BuildContext& c) { return std::make_unique<BatchNormOp>(c); });

// ---- layer_norm over the last axis ------------------------------------------------------
class LayerNormOp : public Op {
 public:
  LayerNormOp(BuildContext& c) : isa_(c.isa), eps_(static_cast<float>(c.node.attr_float("epsilon"))) {
    n_ = c.dense_constant(1).numel();
    gamma_ = ops::vector_constant(c, 1, n_, "gamma");
    if (c.node.inputs.size() > 2) beta_ = ops::vector_constant(c, 2, n_, "beta");
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    same_shape(in, out);
    if (in[0]->shape.empty() || in[0]->shape.back() != n_)
      shape_error("input " + shape_str(in[0]->shape) + " does not end in " + std::to_string(n_));
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    kernels::layer_norm(in[0]->as<float>(), gamma_, beta_, out[0]->as<float>(), in[0]->numel() / n_, n_, eps_, isa_,
                        ctx.threads);
  }
  bool reads_at_run(size_t i) const override { return i == 0; }
  std::string kernel_name() const override { return std::string("layer_norm_") + isa_name(isa_); }
 private:
  Isa isa_;
  float eps_;
  int64_t n_;
  const float* gamma_;
  const float* beta_ = nullptr;
};
SLIMRT_REGISTER_OP("layer_norm", [](BuildContext& c) { return std::make_unique<LayerNormOp>(c); });

// ---- transpose ------------------------------------------------------------------------------
class TransposeOp : public Op {
 public:
  TransposeOp(BuildContext& c) : isa_(c.isa), perm_(c.node.attr_ints("perm")) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    const auto& s = in[0]->shape;
    if (perm_.size() != s.size()) shape_error("perm of length " + std::to_string(perm_.size()) + " for input " + shape_str(s));
    if (s.size() > static_cast<size_t>(kernels::kMaxRank)) shape_error("transpose supports rank <= 6");
    std::vector<int64_t> r(s.size());
    for (size_t d = 0; d < s.size(); ++d) r[d] = s[perm_[d]];
    out[0] = {in[0]->dtype, r};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    int perm[kernels::kMaxRank];
    for (size_t d = 0; d < perm_.size(); ++d) perm[d] = static_cast<int>(perm_[d]);
    const auto& s = in[0]->shape();
    kernels::transpose(in[0]->data, out[0]->data, s.data(), perm, static_cast<int>(s.size()),
                       dtype_size(in[0]->info.dtype), isa_, ctx.threads);
  }
  std::string kernel_name() const override { return std::string("transpose_") + isa_name(isa_); }
 private:
  Isa isa_;
  std::vector<int64_t> perm_;
};
SLIMRT_REGISTER_OP("transpose", [](BuildContext& c) { return std::make_unique<TransposeOp>(c); });

// ---- pad (constant) ----------------------------------------------------------------------------
class PadOp : public Op {
 public:
  PadOp(BuildContext& c) : pads_(c.node.attr_ints("pads")), value_(static_cast<float>(c.node.attr_float("value"))) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    const auto& s = in[0]->shape;
    if (pads_.size() != 2 * s.size()) shape_error("pads of length " + std::to_string(pads_.size()) + " for input " + shape_str(s));
    if (s.size() > static_cast<size_t>(kernels::kMaxRank)) shape_error("pad supports rank <= 6");
    std::vector<int64_t> r(s.size());
    for (size_t d = 0; d < s.size(); ++d) {
      r[d] = s[d] + pads_[d] + pads_[s.size() + d];
      if (r[d] < 0) shape_error("pad would make a negative dimension");
    }
    out[0] = {in[0]->dtype, r};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    const auto& s = in[0]->shape();
    size_t r = s.size();
    int64_t v64 = static_cast<int64_t>(value_);
    int32_t v32 = static_cast<int32_t>(value_);
    const void* val = in[0]->info.dtype == DType::F32 ? static_cast<const void*>(&value_)
                      : dtype_size(in[0]->info.dtype) == 8 ? static_cast<const void*>(&v64) : static_cast<const void*>(&v32);
    kernels::pad(in[0]->data, out[0]->data, s.data(), pads_.data(), pads_.data() + r, static_cast<int>(r), val,
                 dtype_size(in[0]->info.dtype), ctx.threads);
  }
  std::string kernel_name() const override { return "pad"; }
 private:
  std::vector<int64_t> pads_;
  float value_;
};
SLIMRT_REGISTER_OP("pad", [](BuildContext& c) { return std::make_unique<PadOp>(c); });

}  // namespace
}  // namespace slimrt

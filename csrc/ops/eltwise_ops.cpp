// Elementwise and normalisation ops: activation, prelu, add/sub/mul/div,
// softmax, scaled_masked_softmax, attention (multi-head, kernels/attn), batch_norm, layer_norm, transpose, pad.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/threadpool.h"
#include "kernels/eltwise/eltwise.h"
#include "kernels/attn/attn.h"
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

// ---- scaled_masked_softmax: y = softmax(x * scale + mask) over the last axis ------------
// The attention-score pattern (q @ k^T) * scale + mask -> softmax as one pass over the scores.
// mask (optional) is float, its last dim equals x's, and its leading dims broadcast to x's
// (numpy rules, never enlarging x). Rows of x are [d0 .. d_{k-1}] (the leading dims); the
// kernel's SoftmaxMask addresses a mask row as ((r / div) % mod) * n, which covers a mask whose
// non-broadcast leading dims are one run [lo, hi) (e.g. [B, 1, 1, S] key padding, [S, S]
// causal, or a full mask); dims before the run that the mask does not broadcast over are walked
// here, one segment of rows per index, with the mask pointer moved along.
class ScaledMaskedSoftmaxOp : public Op {
 public:
  ScaledMaskedSoftmaxOp(BuildContext& c)
      : isa_(c.isa), scale_(static_cast<float>(c.node.attr_float("scale"))), has_mask_(c.node.inputs.size() > 1) {
    if (!std::isfinite(scale_)) c.fail(Code::Format, "scale must be finite");
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    same_shape(in, out);
    const auto& s = in[0]->shape;
    if (s.empty()) shape_error("scaled_masked_softmax of a scalar");
    if (!has_mask_) return;
    ops::expect_f32(*in[1], "mask");
    const auto& m = in[1]->shape;
    if (m.empty() || m.size() > s.size() || m.back() != s.back())
      shape_error("mask " + shape_str(m) + " must end in the " + std::to_string(s.back()) + " of input " + shape_str(s) +
                  " and have no more dims");
    for (size_t i = 1; i < m.size(); ++i) {
      int64_t md = m[m.size() - 1 - i], xd = s[s.size() - 1 - i];
      if (md != 1 && md != xd) shape_error("mask " + shape_str(m) + " does not broadcast to input " + shape_str(s));
    }
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    const auto& s = in[0]->shape();
    const int64_t n = s.back(), rows = n ? in[0]->numel() / n : 0;
    if (rows == 0 || n == 0) return;
    const float* x = in[0]->as<float>();
    float* y = out[0]->as<float>();
    const int k = static_cast<int>(s.size()) - 1;  // leading dims of x
    // Mask row stride (in rows) per leading dim of x, 0 where the mask broadcasts.
    std::vector<int64_t> ms(k, 0);
    const float* mdata = nullptr;
    if (has_mask_) {
      mdata = in[1]->as<float>();
      const auto& m = in[1]->shape();
      int64_t st = 1;
      for (int i = k - 1, j = static_cast<int>(m.size()) - 2; i >= 0 && j >= 0; --i, --j) {
        if (m[j] != 1) ms[i] = st;
        st *= m[j];
      }
    }
    // [hi, k): broadcast dims after the run -> div; [lo, hi): the run -> mod; [0, lo): walked.
    int hi = k;
    while (hi > 0 && ms[hi - 1] == 0) --hi;
    int lo = hi;
    while (lo > 0 && ms[lo - 1] != 0) --lo;  // mask-contiguous: ms[i - 1] = ms[i] * s[i]
    if (lo == hi) lo = hi = k;  // no mask, or a mask with one row for all
    int64_t div = 1, mod = 1, seg = 1;
    for (int i = hi; i < k; ++i) div *= s[i];
    for (int i = lo; i < hi; ++i) mod *= s[i];
    seg = div * mod;  // rows per index of the walked dims
    bool walk = false;
    for (int i = 0; i < lo; ++i) walk = walk || ms[i] != 0;
    if (!walk) seg = rows;
    const kernels::EltwiseKernels& kt = kernels::eltwise_kernels(isa_);
    const int64_t grain = std::max<int64_t>(1, 16384 / n);
    parallel_for(rows, ctx.threads, grain, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e;) {
        const int64_t o = r / seg, base = o * seg, end = std::min(e, base + seg);
        kernels::SoftmaxMask mk;
        if (mdata) {
          int64_t off = 0, rest = o;  // mask row offset of walked index o
          for (int i = lo - 1; i >= 0 && walk; --i) {
            off += (rest % s[i]) * ms[i];
            rest /= s[i];
          }
          mk.data = mdata + off * n;
          mk.stride = n;
          mk.div = div;
          mk.mod = mod;
        }
        kt.softmax(x + base * n, y + base * n, r - base, end - base, n, scale_, mk);
        r = end;
      }
    });
  }
  std::string kernel_name() const override { return std::string("masked_softmax_") + isa_name(isa_); }
 private:
  Isa isa_;
  float scale_;
  bool has_mask_;
};
SLIMRT_REGISTER_OP("scaled_masked_softmax", [](BuildContext& c) { return std::make_unique<ScaledMaskedSoftmaxOp>(c); });

// ---- attention: multi-head softmax(q k^T * scale + mask) v on head-interleaved rows ---------------
// q [B, Sq, H*D], k and v [B, Sk, H*D] (the outputs of the q/k/v projections, heads side by side in
// each row), y [B, Sq, H*D]. Per (batch, head), kernels::attention_head (kernels/attn/attn.h):
// scores = q_bh k_bh^T read in place (leading dimension H*D), the scaled masked softmax on the
// [Sq, Sk] scores (a per-thread workspace, cache resident), then y_bh = probs v_bh written straight
// into the head's columns of y. mask (optional, float) broadcasts to [B, H, Sq, Sk] (rank <= 4, last
// dim Sk). (batch, head) pairs are split over threads; each head runs on one thread.
// int8=1: both products on int8 codes instead (kernels/attn/attn.h: per-token q/k scales,
// per-channel v scales, u8 probabilities), the user's choice of size/speed over exactness.
class AttentionOp : public Op {
 public:
  AttentionOp(BuildContext& c)
      : isa_(c.isa), heads_(c.node.attr_int("heads")), scale_(static_cast<float>(c.node.attr_float("scale"))),
        has_mask_(c.node.inputs.size() > 3), int8_(c.node.attr_int("int8") != 0) {
    if (heads_ < 1) c.fail(Code::Format, "heads must be >= 1");
    const int64_t i8 = c.node.attr_int("int8");
    if (i8 != 0 && i8 != 1) c.fail(Code::Format, "int8 must be 0 or 1");
    if (!std::isfinite(scale_)) c.fail(Code::Format, "scale must be finite");
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    for (int i = 0; i < 3; ++i) ops::expect_f32(*in[i], i == 0 ? "q" : i == 1 ? "k" : "v");
    const auto &q = in[0]->shape, &k = in[1]->shape, &v = in[2]->shape;
    if (q.size() != 3 || k.size() != 3 || v.size() != 3)
      shape_error("q, k, v must be [batch, length, heads*dim], got " + shape_str(q) + ", " + shape_str(k) + ", " +
                  shape_str(v));
    if (k != v || k[0] != q[0] || k[2] != q[2])
      shape_error("q " + shape_str(q) + ", k " + shape_str(k) + ", v " + shape_str(v) + " do not match");
    if (q[2] % heads_) shape_error("width " + std::to_string(q[2]) + " is not a multiple of " + std::to_string(heads_) + " heads");
    if (has_mask_) {
      ops::expect_f32(*in[3], "mask");
      const auto& m = in[3]->shape;
      const int64_t full[4] = {q[0], heads_, q[1], k[1]};
      if (m.empty() || m.size() > 4 || m.back() != k[1])
        shape_error("mask " + shape_str(m) + " must have rank <= 4 and end in the key length " + std::to_string(k[1]));
      for (size_t i = 0; i < m.size(); ++i) {
        int64_t d = m[m.size() - 1 - i], want = full[3 - i];
        if (d != 1 && d != want)
          shape_error("mask " + shape_str(m) + " does not broadcast to [batch, heads, q length, k length] " +
                      shape_str({full[0], full[1], full[2], full[3]}));
      }
    }
    out[0] = {DType::F32, q};
  }
  // One head workspace per thread that runs heads: workspace() and run() share these two.
  static int64_t head_threads(int threads, int64_t pairs) {
    return std::max<int64_t>(1, std::min<int64_t>(threads > 0 ? threads : default_threads(), pairs));
  }
  size_t head_bytes(int64_t Sq, int64_t Sk, int64_t D) const {
    return align64(kernels::attention_head_workspace(Sq, Sk, D, int8_));
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    const auto& qs = in[0]->shape;
    return size_t(head_threads(threads, qs[0] * heads_)) * head_bytes(qs[1], in[1]->shape[1], qs[2] / heads_);
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    const auto& qs = in[0]->shape();
    const int64_t B = qs[0], Sq = qs[1], Sk = in[1]->shape()[1], E = qs[2], H = heads_, D = E / H;
    float* y = out[0]->as<float>();
    if (B * Sq * E == 0) return;
    if (Sk == 0) {  // softmax over no keys: NaN, as torch
      std::fill(y, y + B * Sq * E, NAN);
      return;
    }
    const float *q = in[0]->as<float>(), *k = in[1]->as<float>(), *v = in[2]->as<float>();
    // mask strides (floats) for batch, head and query row; 0 where it broadcasts
    int64_t mb = 0, mh = 0, mq = 0;
    const float* mask = nullptr;
    if (has_mask_) {
      mask = in[3]->as<float>();
      const auto& m = in[3]->shape();
      int64_t md[4] = {1, 1, 1, Sk};
      for (size_t i = 0; i < m.size(); ++i) md[4 - m.size() + i] = m[i];
      mq = md[2] > 1 ? Sk : 0;
      mh = md[1] > 1 ? md[2] * Sk : 0;
      mb = md[0] > 1 ? md[1] * md[2] * Sk : 0;
    }
    const int64_t pairs = B * H;
    const int64_t chunks = head_threads(ctx.threads, pairs);
    const size_t wsb = head_bytes(Sq, Sk, D);
    ThreadPool::global().run(chunks, static_cast<int>(chunks), [&](int64_t t) {
      uint8_t* head_ws = static_cast<uint8_t*>(ws) + t * wsb;  // slot t (workspace(): chunks slots)
      for (int64_t p = pairs * t / chunks; p < pairs * (t + 1) / chunks; ++p) {
        const int64_t b = p / H, h = p % H;
        kernels::AttnHead hd;
        hd.Sq = Sq, hd.Sk = Sk, hd.D = D;
        hd.q = q + b * Sq * E + h * D, hd.k = k + b * Sk * E + h * D, hd.v = v + b * Sk * E + h * D;
        hd.ldq = hd.ldk = hd.ldv = hd.ldy = E;
        hd.y = y + b * Sq * E + h * D;
        hd.scale = scale_;
        if (mask) {
          hd.mask.data = mask + b * mb + h * mh;
          hd.mask.stride = mq;
          hd.mask.div = 1;
          hd.mask.mod = Sq;
        }
        kernels::attention_head(hd, int8_, head_ws, isa_);
      }
    });
  }
  std::string kernel_name() const override {
    return std::string(int8_ ? "q8_attention_" : "attention_") + kernels::attention_isa(isa_, int8_);
  }
 private:
  Isa isa_;
  int64_t heads_;
  float scale_;
  bool has_mask_;
  bool int8_;
};
SLIMRT_REGISTER_OP("attention", [](BuildContext& c) { return std::make_unique<AttentionOp>(c); });

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

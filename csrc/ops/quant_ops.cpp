// Static int8 activation chains: ops on u8 activation values x ~ scale * (q - zero_point).
// The (scale, zero_point) of every u8 value is an attribute of the ops that read or write it
// (python/slimrt/optimize.py int8_chain writes them from the calibration in metadata["act_quant"]).
//
//   quantize          f32 -> u8                  q = clamp(rint(x * (1/scale)) + zero_point, 0, 255)
//   dequantize        u8 -> f32                  (q - zero_point) * scale
//   qdense / qconv2d  u8 x, QInt8 weight -> u8 (out_scale > 0, requantized in the GEMM epilogue) or f32;
//                     bias, a fused residual (u8 with res_scale/res_zero, or f32) and the activation
//                     run in the epilogue. Depthwise qconv2d (groups == C == O) runs the int8
//                     depthwise kernel (activations none/relu/relu6/leaky_relu).
//   qmax_pool         u8 -> u8 on the codes (same scale / zero point)
//   qglobal_avg_pool  u8 -> u8 (requantized) or f32
//   qadd              u8 + u8 -> u8 or f32 (act none/relu/relu6)
//   qactivation       u8 -> u8 through a 256-entry table built at load (any activation)
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/threadpool.h"
#include "kernels/gemm/sgemm.h"
#include "kernels/pool/pool.h"
#include "kernels/qdwconv/qdwconv.h"
#include "kernels/qgemm/q8_eltwise.h"
#include "kernels/qgemm/qgemm.h"
#include "ops/common.h"
#include "runtime/op.h"

namespace slimrt {
namespace {

// (scale, zero) attributes of a u8 value; scale must be > 0 unless allow_zero (then 0 = float).
struct QParams {
  float scale = 1.f;
  int32_t zero = 0;
};
QParams qparams(const BuildContext& c, const char* scale_key, const char* zero_key, bool allow_zero = false) {
  const double s = c.node.attr_float(scale_key);
  const int64_t z = c.node.attr_int(zero_key);
  if (!std::isfinite(s) || s < 0 || (s == 0 && !allow_zero) || (s > 0 && !(static_cast<float>(s) > 0.f)))
    c.fail(Code::Format, std::string("attribute '") + scale_key + "' must be a positive finite float");
  if (z < 0 || z > 255) c.fail(Code::Format, std::string("attribute '") + zero_key + "' must be in [0, 255]");
  return {static_cast<float>(s), static_cast<int32_t>(z)};
}

void expect_u8(const TensorInfo& t, const char* what) {
  if (t.dtype != DType::U8) shape_error(std::string(what) + " must be uint8, got " + dtype_name(t.dtype));
}

std::string isa_suffix(Isa isa) { return std::string("_") + isa_name(isa); }

// ---- quantize / dequantize ---------------------------------------------------------------
class QuantizeOp : public Op {
 public:
  explicit QuantizeOp(BuildContext& c) : isa_(c.isa), p_(qparams(c, "scale", "zero_point")) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    ops::expect_f32(*in[0], "input");
    out[0] = {DType::U8, in[0]->shape};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext& ctx) const override {
    const float* x = in[0]->as<float>();
    uint8_t* y = out[0]->as<uint8_t>();
    parallel_for(in[0]->numel(), ctx.threads, 65536, [&](int64_t i0, int64_t i1) {
      kernels::quantize_u8(x + i0, i1 - i0, p_.scale, p_.zero, y + i0, isa_);
    });
  }
  std::string kernel_name() const override { return "quantize_u8" + isa_suffix(isa_); }

 private:
  Isa isa_;
  QParams p_;
};
SLIMRT_REGISTER_OP("quantize", [](BuildContext& c) { return std::make_unique<QuantizeOp>(c); });

class DequantizeOp : public Op {
 public:
  explicit DequantizeOp(BuildContext& c) : p_(qparams(c, "scale", "zero_point")) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    expect_u8(*in[0], "input");
    out[0] = {DType::F32, in[0]->shape};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext& ctx) const override {
    const uint8_t* x = in[0]->as<uint8_t>();
    float* y = out[0]->as<float>();
    parallel_for(in[0]->numel(), ctx.threads, 65536, [&](int64_t i0, int64_t i1) {
      kernels::dequantize_u8(x + i0, i1 - i0, p_.scale, p_.zero, y + i0);
    });
  }
  std::string kernel_name() const override { return "dequantize_u8"; }

 private:
  QParams p_;
};
SLIMRT_REGISTER_OP("dequantize", [](BuildContext& c) { return std::make_unique<DequantizeOp>(c); });

// ---- shared parts of qdense / qconv2d --------------------------------------------------------
// The int8 weight (per output channel or per tensor scale) of input 1.
const TensorDef& int8_weight(BuildContext& c) {
  const TensorDef& w = c.tensor_def(1);
  if (w.format != TFormat::Int8 || !(w.axis == -1 || w.axis == 0))
    c.fail(Code::Format, std::string("weight '") + w.name + "' must be stored as int8 (QInt8, per output channel)");
  return w;
}

struct QLayer {
  QParams x, out, res;
  int ridx = -1;
  const float* bias = nullptr;
  std::pair<Act, float> act;
  AlignedPtr<float> w_scale;

  void build(BuildContext& c, const TensorDef& w, int64_t n) {
    x = qparams(c, "x_scale", "x_zero");
    out = qparams(c, "out_scale", "out_zero", true);
    res = qparams(c, "res_scale", "res_zero");
    int bi;
    ridx = ops::residual_input(c, &bi);
    if (bi >= 0) bias = ops::vector_constant(c, bi, n, "bias");
    act = ops::parse_act(c);
    w_scale = aligned_array<float>(n);
    for (int64_t i = 0; i < n; ++i) w_scale[i] = w.scale.as<float>()[w.axis < 0 ? 0 : i];
  }
  DType out_dtype() const { return out.scale > 0.f ? DType::U8 : DType::F32; }
  // ri: where the residual sits in `in` (a fused op's inputs differ from the node's), -2: ridx.
  void check_residual(const std::vector<const TensorInfo*>& in, const TensorInfo& o, int ri = -2) const {
    if (ri == -2) ri = ridx;
    if (ri < 0) return;
    const TensorInfo& r = *in[ri];
    if ((r.dtype != DType::U8 && r.dtype != DType::F32) || r.shape != o.shape)
      shape_error("residual " + std::string(dtype_name(r.dtype)) + " " + shape_str(r.shape) +
                  " does not match the output " + shape_str(o.shape) + " (uint8 or float32)");
  }
  kernels::Q8StaticEpilogue epilogue(const std::vector<const Tensor*>& in, int64_t ldr, int ri = -2) const {
    if (ri == -2) ri = ridx;
    kernels::Q8StaticEpilogue ep;
    ep.bias = bias;
    ep.act = act.first;
    ep.alpha = act.second;
    ep.out_scale = out.scale;
    ep.out_zero = out.zero;
    if (ri >= 0) {
      if (in[ri]->info.dtype == DType::U8) {
        ep.residual_u8 = in[ri]->as<uint8_t>();
        ep.res_scale = res.scale;
        ep.res_zero = res.zero;
      } else {
        ep.residual = in[ri]->as<float>();
      }
      ep.ldr = ldr;
    }
    return ep;
  }
};

// ---- qdense -----------------------------------------------------------------------------------
class QDenseOp : public Op {
 public:
  explicit QDenseOp(BuildContext& c) : isa_(c.isa) {
    const TensorDef& w = int8_weight(c);
    if (w.shape.size() != 2) c.fail(Code::Format, "weight must be 2-D [out, in], got " + shape_str(w.shape));
    n_ = w.shape[0];
    k_ = w.shape[1];
    if (k_ > kernels::kQ8MaxK) c.fail(Code::Format, "K = " + std::to_string(k_) + " exceeds the int8 GEMM's limit");
    q_.build(c, w, n_);
    try {
      b_ = kernels::pack_q8_b(w.data.as<int8_t>(), n_, k_, isa_);
    } catch (const Error& e) {
      c.fail(Code::Format, e.what());
    }
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    expect_u8(*in[0], "input");
    const auto& s = in[0]->shape;
    if (s.empty() || s.back() != k_)
      shape_error("input " + shape_str(s) + " does not end in " + std::to_string(k_) + " features");
    std::vector<int64_t> r = s;
    r.back() = n_;
    out[0] = {q_.out_dtype(), r};
    q_.check_residual(in, out[0]);
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    return kernels::q8_dense_workspace(in[0]->numel() / k_, k_, threads);
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    kernels::q8_dense_static_ex(in[0]->numel() / k_, in[0]->as<uint8_t>(), k_, q_.x.scale, q_.x.zero, *b_,
                                q_.w_scale.get(), q_.epilogue(in, n_), out[0]->data, n_, ws, ctx.threads);
  }
  bool reads_at_run(size_t i) const override { return i == 0 || static_cast<int>(i) == q_.ridx; }
  std::string kernel_name() const override { return "q8_dense_static" + isa_suffix(isa_); }

 private:
  Isa isa_;
  int64_t n_ = 0, k_ = 0;
  QLayer q_;
  std::unique_ptr<kernels::PackedQ8B> b_;
};
SLIMRT_REGISTER_OP("qdense", [](BuildContext& c) { return std::make_unique<QDenseOp>(c); });

// ---- qconv2d (NHWC) -------------------------------------------------------------------------
class QConv2dOp : public Op {
 public:
  explicit QConv2dOp(BuildContext& c) : inputs_(c.node.inputs.size()), isa_(c.isa) {
    const TensorDef& w = int8_weight(c);
    if (w.shape.size() != 4) c.fail(Code::Format, "weight must be 4-D [O, KH, KW, C/groups], got " + shape_str(w.shape));
    o_ = w.shape[0];
    kh_ = w.shape[1];
    kw_ = w.shape[2];
    cg_ = w.shape[3];
    groups_ = c.node.attr_int("groups");
    if (o_ % groups_) c.fail(Code::Format, "output channels " + std::to_string(o_) + " not divisible by groups");
    auto st = c.node.attr_ints("strides"), dl = c.node.attr_ints("dilations"), pd = c.node.attr_ints("pads");
    sh_ = st[0]; sw_ = st[1]; dh_ = dl[0]; dw_ = dl[1];
    pt_ = pd[0]; pl_ = pd[1]; pb_ = pd[2]; pr_ = pd[3];
    q_.build(c, w, o_);
    const Act a = q_.act.first;
    const bool inline_act = a == Act::None || a == Act::Relu || a == Act::Relu6 || a == Act::LeakyRelu;
    try {
      if (groups_ > 1 && cg_ == 1 && o_ == groups_ && inline_act && kh_ <= 64 && kw_ <= 64) {
        dw_pack_ = kernels::pack_q8_dw(w.data.as<int8_t>(), o_, static_cast<int>(kh_), static_cast<int>(kw_), isa_);
        mul_ = aligned_array<float>(o_);
        for (int64_t i = 0; i < o_; ++i) mul_[i] = q_.x.scale * q_.w_scale[i];
      } else {
        if (kh_ * kw_ * cg_ > kernels::kQ8MaxK) c.fail(Code::Format, "K exceeds the int8 GEMM's limit");
        pack_ = kernels::pack_q8_conv2d(w.data.as<int8_t>(), o_, kh_, kw_, cg_, groups_, isa_);
      }
    } catch (const Error& e) {
      c.fail(Code::Format, e.what());
    }
  }
  kernels::Conv2dShape shape_of(const std::vector<int64_t>& s) const {
    kernels::Conv2dShape cs{};
    cs.N = s[0]; cs.H = s[1]; cs.W = s[2]; cs.C = s[3]; cs.O = o_; cs.KH = kh_; cs.KW = kw_;
    cs.stride_h = sh_; cs.stride_w = sw_; cs.dil_h = dh_; cs.dil_w = dw_;
    cs.pad_t = pt_; cs.pad_l = pl_; cs.pad_b = pb_; cs.pad_r = pr_; cs.groups = groups_;
    return cs;
  }
  kernels::DwConv2dShape dw_shape(const std::vector<int64_t>& s) const {
    kernels::DwConv2dShape d;
    d.n = s[0]; d.h = s[1]; d.w = s[2]; d.c = s[3]; d.mult = 1;
    d.kh = static_cast<int>(kh_); d.kw = static_cast<int>(kw_);
    d.sh = static_cast<int>(sh_); d.sw = static_cast<int>(sw_);
    d.dh = static_cast<int>(dh_); d.dw = static_cast<int>(dw_);
    d.pt = static_cast<int>(pt_); d.pl = static_cast<int>(pl_);
    d.pb = static_cast<int>(pb_); d.pr = static_cast<int>(pr_);
    kernels::dwconv2d_output_size(d);
    return d;
  }
  // The output shape for a u8 NHWC input (shape_error on a bad one).
  std::vector<int64_t> out_shape(const TensorInfo& x) const {
    expect_u8(x, "input");
    const auto& s = x.shape;
    if (s.size() != 4) shape_error("input must be NHWC, got " + shape_str(s));
    if (s[3] != cg_ * groups_)
      shape_error("input has " + std::to_string(s[3]) + " channels, weights expect " + std::to_string(cg_ * groups_));
    int64_t oh = ops::conv_out(s[1], kh_, sh_, dh_, pt_, pb_), ow = ops::conv_out(s[2], kw_, sw_, dw_, pl_, pr_);
    if (oh <= 0 || ow <= 0) shape_error("input " + shape_str(s) + " is smaller than the kernel");
    return {s[0], oh, ow, o_};
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    out[0] = {q_.out_dtype(), out_shape(*in[0])};
    q_.check_residual(in, out[0]);
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    if (dw_pack_) return 0;
    return kernels::q8_conv2d_static_workspace(shape_of(in[0]->shape), *pack_, threads);
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    const kernels::Q8StaticEpilogue ep = q_.epilogue(in, o_);
    if (dw_pack_) {
      kernels::Q8DwEpilogue d = dw_epilogue();
      static_cast<kernels::Q8StaticEpilogue&>(d) = ep;
      kernels::q8_dwconv2d(dw_shape(in[0]->shape()), in[0]->as<uint8_t>(), *dw_pack_, d, out[0]->data, ctx.threads);
      return;
    }
    kernels::q8_conv2d_static(shape_of(in[0]->shape()), in[0]->as<uint8_t>(), q_.x.scale, q_.x.zero, *pack_,
                              q_.w_scale.get(), ep, out[0]->data, ws, ctx.threads);
  }
  bool reads_at_run(size_t i) const override { return i == 0 || static_cast<int>(i) == q_.ridx; }
  std::string kernel_name() const override {
    if (dw_pack_) return "q8_dwconv" + isa_suffix(isa_);
    return std::string(pointwise() ? "q8_conv1x1_static" : "q8_conv_im2col_static") + isa_suffix(isa_);
  }
  std::unique_ptr<Op> fuse_producer(const Op& producer) const override;

 private:
  friend class QDwPointwiseOp;
  friend class QExpandDwPointwiseOp;
  bool pointwise() const { return kh_ == 1 && kw_ == 1 && sh_ == 1 && sw_ == 1 && !pt_ && !pl_ && !pb_ && !pr_; }
  kernels::Q8DwEpilogue dw_epilogue() const {
    kernels::Q8DwEpilogue d;
    static_cast<kernels::Q8StaticEpilogue&>(d) = q_.epilogue({}, o_, -1);
    d.x_zero = q_.x.zero;
    d.mul = mul_.get();
    return d;
  }
  size_t inputs_ = 0;  // the node's input count
  Isa isa_;
  int64_t o_, kh_, kw_, cg_, groups_, sh_, sw_, dh_, dw_, pt_, pl_, pb_, pr_;
  QLayer q_;
  std::unique_ptr<kernels::PackedQ8Conv2d> pack_;
  std::unique_ptr<kernels::PackedQ8Dw> dw_pack_;
  AlignedPtr<float> mul_;
};
// ---- int8 depthwise conv + the 1x1 conv that alone reads its u8 output, as one op ----------------
// The int8 twin of DwPointwiseOp (ops/gemm_ops.cpp), split the same way (ops::FusedChunks): a u8
// depthwise output of >= 1 MB is made a few output rows at a time in a per-thread buffer that the
// int8 GEMM consumes at once. Same kernels, same bytes as the two nodes run apart.
class QDwPointwiseOp : public Op {
 public:
  QDwPointwiseOp(const QConv2dOp& dw, const QConv2dOp& pw)
      : dw_(dw), pw_(pw), ridx_(pw.q_.ridx >= 0 ? static_cast<int>(dw.inputs_) + pw.q_.ridx - 1 : -1) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    std::vector<int64_t> y = dw_.out_shape(*in[0]);  // the depthwise output, then the pointwise conv's
    y[3] = pw_.o_;
    out[0] = {pw_.q_.out_dtype(), y};
    pw_.q_.check_residual(in, out[0], ridx_);
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    const auto s = dw_.dw_shape(in[0]->shape);
    const ops::FusedChunks g = chunks(s);
    if (g.chunked) return static_cast<size_t>(std::max(1, threads)) * slot_bytes(s, g);
    return g.align(g.mid_bytes) + g.align(kernels::q8_conv2d_static_workspace(pw_shape(s.n, s.oh, s.ow), *pw_.pack_, threads));
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    const kernels::DwConv2dShape s = dw_.dw_shape(in[0]->shape());
    const ops::FusedChunks g = chunks(s);
    const uint8_t* x = in[0]->as<uint8_t>();
    const kernels::Q8DwEpilogue de = dw_.dw_epilogue();
    const kernels::Q8StaticEpilogue ep = pw_.q_.epilogue(in, pw_.o_, ridx_);
    const QLayer& q = pw_.q_;
    auto* base = static_cast<uint8_t*>(ws);
    if (!g.chunked) {
      kernels::q8_dwconv2d(s, x, *dw_.dw_pack_, de, base, ctx.threads);
      kernels::q8_conv2d_static(pw_shape(s.n, s.oh, s.ow), base, q.x.scale, q.x.zero, *pw_.pack_, q.w_scale.get(), ep,
                                out[0]->data, base + g.align(g.mid_bytes), ctx.threads);
      return;
    }
    const size_t osz = q.out_dtype() == DType::U8 ? 1 : sizeof(float);
    const int64_t O = pw_.o_;
    g.run(ctx.threads, ws, slot_bytes(s, g), [&](int64_t r0, int64_t r1, int64_t next, uint8_t* slot) {
      kernels::q8_dwconv2d_rows(s, x, *dw_.dw_pack_, de, slot, r0, r1);
      kernels::Q8StaticEpilogue e = ep;
      const int64_t off = r0 * s.ow * O;
      if (e.residual) e.residual += off;
      if (e.residual_u8) e.residual_u8 += off;
      if (next >= 0) {  // the next chunk's depthwise input, fetched while the GEMM computes
        const auto [poff, plen] = g.input_span(s, next, 1);
        e.prefetch = x + poff;
        e.prefetch_bytes = plen;
      }
      kernels::q8_conv2d_static(pw_shape(1, r1 - r0, s.ow), slot, q.x.scale, q.x.zero, *pw_.pack_, q.w_scale.get(), e,
                                static_cast<uint8_t*>(out[0]->data) + off * osz, slot + g.align(g.mid_bytes), 1);
    });
  }
  bool reads_at_run(size_t i) const override { return i == 0 || static_cast<int>(i) == ridx_; }
  std::string kernel_name() const override { return dw_.kernel_name() + "+" + pw_.kernel_name(); }
  std::unique_ptr<Op> fuse_producer(const Op& producer) const override;

 private:
  friend class QExpandDwPointwiseOp;
  ops::FusedChunks chunks(const kernels::DwConv2dShape& s) const { return ops::FusedChunks(s.n * s.oh, s.ow, s.ow * s.c); }
  size_t slot_bytes(const kernels::DwConv2dShape& s, const ops::FusedChunks& g) const {
    return g.align(g.mid_bytes) + g.align(kernels::q8_conv2d_static_workspace(pw_shape(1, g.R, s.ow), *pw_.pack_, 1));
  }
  kernels::Conv2dShape pw_shape(int64_t n, int64_t h, int64_t w) const { return pw_.shape_of({n, h, w, pw_.cg_}); }
  const QConv2dOp& dw_;
  const QConv2dOp& pw_;
  int ridx_;
};

// ---- int8 pointwise expansion + depthwise + pointwise projection, as one op -------------------------
// The int8 twin of ExpandDwPointwiseOp (ops/gemm_ops.cpp), walked the same way (ops::ExpandChunks): the
// u8 expansion rows each chunk of depthwise rows reads are made in a per-thread buffer that slides
// down the image. Same kernels, same bytes as the three nodes run apart.
class QExpandDwPointwiseOp : public Op {
 public:
  QExpandDwPointwiseOp(const QConv2dOp& ex, const QDwPointwiseOp& dp)
      : ex_(ex), dp_(dp), shift_(ex.inputs_ - 1), ridx_(dp.ridx_ >= 0 ? dp.ridx_ + static_cast<int>(shift_) : -1) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    std::vector<TensorInfo> e(1);
    ex_.infer(in, e);  // x against the expansion (no residual: it reads input 0 only)
    dp_.infer(dp_inputs(in, &e[0]), out);
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    const std::vector<int64_t> e = e_shape(in[0]->shape);
    if (chunked(e)) return static_cast<size_t>(std::max(1, threads)) * slot_bytes(in[0]->shape, chunks(e));
    TensorInfo ei{DType::U8, e};
    return align(ei.bytes()) + std::max(kernels::q8_conv2d_static_workspace(ex_.shape_of(in[0]->shape), *ex_.pack_, threads),
                                        dp_.workspace(dp_inputs(in, &ei), threads));
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    const std::vector<int64_t>& xs = in[0]->shape();
    const std::vector<int64_t> es = e_shape(xs);
    const uint8_t* x = in[0]->as<uint8_t>();
    auto* base = static_cast<uint8_t*>(ws);
    const QLayer& eq = ex_.q_;
    const kernels::Q8StaticEpilogue eep = eq.epilogue(in, ex_.o_, -1);
    if (!chunked(es)) {
      Tensor e{{DType::U8, es}, base};
      kernels::q8_conv2d_static(ex_.shape_of(xs), x, eq.x.scale, eq.x.zero, *ex_.pack_, eq.w_scale.get(), eep, base,
                                base + align(e.info.bytes()), ctx.threads);
      dp_.run(dp_inputs(in, &e), out, base + align(e.info.bytes()), ctx);
      return;
    }
    const ops::ExpandChunks g = chunks(es);
    const kernels::DwConv2dShape& s = g.s;
    const int64_t cin = xs[3], O = dp_.pw_.o_, erow = s.w * s.c;
    const size_t mid_at = g.mid_at(), scratch_at = g.scratch_at();
    const kernels::Q8DwEpilogue de = dp_.dw_.dw_epilogue();
    const QLayer& pq = dp_.pw_.q_;
    const kernels::Q8StaticEpilogue pep = pq.epilogue(in, O, ridx_);
    const size_t osz = pq.out_dtype() == DType::U8 ? 1 : sizeof(float);
    g.run(
        ctx.threads, ws, slot_bytes(xs, g),
        [&](int64_t n, int64_t i0, int64_t i1, uint8_t* dst, uint8_t* slot) {
          kernels::q8_conv2d_static(ex_.shape_of({1, i1 - i0, s.w, cin}), x + (n * s.h + i0) * s.w * cin, eq.x.scale,
                                    eq.x.zero, *ex_.pack_, eq.w_scale.get(), eep, dst, slot + scratch_at, 1);
        },
        [&](int64_t n, int64_t r0, int64_t r1, int64_t a, uint8_t* slot) {
          // The row kernel reads input row i of image n at x + (n*h + i) * erow: based so that rows a.. are the slot's.
          const int64_t g0 = n * s.oh + r0, off = g0 * s.ow * O;
          const auto* xb = reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(slot) -
                                                            static_cast<uintptr_t>((n * s.h + a) * erow));
          kernels::q8_dwconv2d_rows(s, xb, *dp_.dw_.dw_pack_, de, slot + mid_at, g0, n * s.oh + r1);
          kernels::Q8StaticEpilogue e = pep;
          if (e.residual) e.residual += off;
          if (e.residual_u8) e.residual_u8 += off;
          kernels::q8_conv2d_static(dp_.pw_shape(1, r1 - r0, s.ow), slot + mid_at, pq.x.scale, pq.x.zero, *dp_.pw_.pack_,
                                    pq.w_scale.get(), e, static_cast<uint8_t*>(out[0]->data) + off * osz,
                                    slot + scratch_at, 1);
        });
  }
  bool reads_at_run(size_t i) const override {
    return i == 0 || static_cast<int>(i) == ridx_;
  }
  std::string kernel_name() const override { return ex_.kernel_name() + "+" + dp_.kernel_name(); }

 private:
  static size_t align(size_t b) { return ops::FusedChunks::align(b); }
  std::vector<int64_t> e_shape(const std::vector<int64_t>& x) const { return {x[0], x[1], x[2], ex_.o_}; }
  static bool chunked(const std::vector<int64_t>& e) { return ops::ExpandChunks::walks(e, 1); }
  ops::ExpandChunks chunks(const std::vector<int64_t>& e) const { return ops::ExpandChunks(dp_.dw_.dw_shape(e), 1); }
  // One thread's slot (ops::ExpandChunks), with the scratch of either GEMM.
  size_t slot_bytes(const std::vector<int64_t>& xs, const ops::ExpandChunks& g) const {
    return g.slot_bytes(
        std::max(kernels::q8_conv2d_static_workspace(ex_.shape_of({1, g.erows, g.s.w, xs[3]}), *ex_.pack_, 1),
                 kernels::q8_conv2d_static_workspace(dp_.pw_shape(1, g.R, g.s.ow), *dp_.pw_.pack_, 1)));
  }
  // The QDwPointwiseOp's inputs: the expansion output e, then this op's inputs past the expansion's.
  template <typename T>
  std::vector<const T*> dp_inputs(const std::vector<const T*>& in, const T* e) const {
    return ops::inner_inputs(in, e, 1 + shift_);
  }

  const QConv2dOp& ex_;
  const QDwPointwiseOp& dp_;
  size_t shift_;  // inputs of the expansion past x: the QDwPointwiseOp's input i is this op's i + shift_
  int ridx_;      // the projection's residual among this op's inputs, or -1
};

std::unique_ptr<Op> QDwPointwiseOp::fuse_producer(const Op& producer) const {
  const auto* ex = dynamic_cast<const QConv2dOp*>(&producer);
  // A u8-output 1x1 conv without residual (int8 GEMM path) into the depthwise conv.
  if (!ex || ex->dw_pack_ || !ex->pack_ || !ex->pointwise() || ex->groups_ != 1 || ex->q_.ridx >= 0 ||
      ex->q_.out_dtype() != DType::U8 || ex->o_ != dw_.cg_ * dw_.groups_)
    return nullptr;
  return std::make_unique<QExpandDwPointwiseOp>(*ex, *this);
}

std::unique_ptr<Op> QConv2dOp::fuse_producer(const Op& producer) const {
  const auto* dw = dynamic_cast<const QConv2dOp*>(&producer);
  // A u8-output depthwise conv without residual into this 1x1 conv (int8 GEMM path).
  if (!dw || !dw->dw_pack_ || dw->q_.ridx >= 0 || dw->q_.out_dtype() != DType::U8) return nullptr;
  if (dw_pack_ || !pack_ || !pointwise() || groups_ != 1 || dw->o_ != cg_) return nullptr;
  return std::make_unique<QDwPointwiseOp>(*dw, *this);
}

SLIMRT_REGISTER_OP("qconv2d", [](BuildContext& c) { return std::make_unique<QConv2dOp>(c); });

// ---- qmax_pool / qglobal_avg_pool ------------------------------------------------------------
class QMaxPoolOp : public Op {
 public:
  explicit QMaxPoolOp(BuildContext& c) : base_(ops::pool_window(c)) {}
  kernels::Pool2dShape shape_of(const std::vector<int64_t>& x) const { return ops::pool_shape(base_, x); }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    expect_u8(*in[0], "input");
    auto s = shape_of(in[0]->shape);
    out[0] = {DType::U8, {s.n, s.oh, s.ow, s.c}};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext& ctx) const override {
    kernels::q8_max_pool2d(in[0]->as<uint8_t>(), out[0]->as<uint8_t>(), shape_of(in[0]->shape()), ctx.threads);
  }
  std::string kernel_name() const override { return "q8_maxpool"; }

 private:
  kernels::Pool2dShape base_;
};
SLIMRT_REGISTER_OP("qmax_pool", [](BuildContext& c) { return std::make_unique<QMaxPoolOp>(c); });

class QGlobalAvgPoolOp : public Op {
 public:
  explicit QGlobalAvgPoolOp(BuildContext& c)
      : x_(qparams(c, "x_scale", "x_zero")), out_(qparams(c, "out_scale", "out_zero", true)),
        keep_(c.node.attr_int("keepdims") != 0) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    expect_u8(*in[0], "input");
    const auto& x = in[0]->shape;
    if (x.size() != 4) shape_error("global pooling input must be NHWC, got " + shape_str(x));
    if (x[1] * x[2] == 0) shape_error("global pooling over an empty image");
    const DType t = out_.scale > 0.f ? DType::U8 : DType::F32;
    out[0] = keep_ ? TensorInfo{t, {x[0], 1, 1, x[3]}} : TensorInfo{t, {x[0], x[3]}};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext& ctx) const override {
    const auto& x = in[0]->shape();
    kernels::q8_global_avg_pool(in[0]->as<uint8_t>(), x[0], x[1] * x[2], x[3], x_.scale, x_.zero, out_.scale,
                                out_.zero, out[0]->data, ctx.threads);
  }
  std::string kernel_name() const override { return "q8_global_avg"; }

 private:
  QParams x_, out_;
  bool keep_;
};
SLIMRT_REGISTER_OP("qglobal_avg_pool", [](BuildContext& c) { return std::make_unique<QGlobalAvgPoolOp>(c); });

// ---- qadd ---------------------------------------------------------------------------------------
class QAddOp : public Op {
 public:
  explicit QAddOp(BuildContext& c)
      : a_(qparams(c, "a_scale", "a_zero")), b_(qparams(c, "b_scale", "b_zero")),
        out_(qparams(c, "out_scale", "out_zero", true)) {
    act_ = ops::parse_act(c).first;
    if (act_ != Act::None && act_ != Act::Relu && act_ != Act::Relu6)
      c.fail(Code::Format, "qadd supports the activations none, relu and relu6");
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    expect_u8(*in[0], "a");
    expect_u8(*in[1], "b");
    if (in[0]->shape != in[1]->shape)
      shape_error("qadd needs equal shapes, got " + shape_str(in[0]->shape) + " and " + shape_str(in[1]->shape));
    out[0] = {out_.scale > 0.f ? DType::U8 : DType::F32, in[0]->shape};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext& ctx) const override {
    kernels::q8_add(in[0]->as<uint8_t>(), a_.scale, a_.zero, in[1]->as<uint8_t>(), b_.scale, b_.zero,
                    in[0]->numel(), act_, out_.scale, out_.zero, out[0]->data, ctx.threads);
  }
  std::string kernel_name() const override { return "q8_add"; }

 private:
  QParams a_, b_, out_;
  Act act_;
};
SLIMRT_REGISTER_OP("qadd", [](BuildContext& c) { return std::make_unique<QAddOp>(c); });

// ---- qactivation: u8 -> u8 through a table -------------------------------------------------------
double act_f64(double x, Act a, double alpha) {
  switch (a) {
    case Act::None: return x;
    case Act::Relu: return x < 0 ? 0 : x;
    case Act::Relu6: return x < 0 ? 0 : (x > 6 ? 6 : x);
    case Act::LeakyRelu: return x >= 0 ? x : alpha * x;
    case Act::Sigmoid: return 1 / (1 + std::exp(-x));
    case Act::Tanh: return std::tanh(x);
    case Act::Gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Act::GeluTanh: return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case Act::Silu: return x / (1 + std::exp(-x));
    case Act::HardSwish: return x * std::min(std::max(x + 3, 0.0), 6.0) / 6;
    case Act::Elu: return x >= 0 ? x : alpha * (std::exp(std::min(x, 0.0)) - 1);
    case Act::HardSigmoid: return std::min(std::max(x + 3, 0.0), 6.0) / 6;
  }
  return x;
}

class QActivationOp : public Op {
 public:
  explicit QActivationOp(BuildContext& c) {
    const QParams x = qparams(c, "x_scale", "x_zero"), o = qparams(c, "out_scale", "out_zero");
    const auto act = ops::parse_act(c);
    // In float64, like the reference executor: q' = clamp(rint(act((q - zx) * sx) / so) + zo, 0, 255).
    for (int q = 0; q < 256; ++q) {
      const double y = act_f64((q - x.zero) * static_cast<double>(x.scale), act.first, act.second);
      double t = std::nearbyint(y / static_cast<double>(o.scale)) + o.zero;
      t = !(t >= 0) ? 0 : (t > 255 ? 255 : t);
      table_[q] = static_cast<uint8_t>(t);
    }
    // A table of the form clamp(q, lo, hi) (relu / relu6 with the input's parameters) runs as a clamp.
    lo_ = table_[0];
    hi_ = table_[255];
    clamp_ = lo_ <= hi_;
    for (int q = 0; q < 256 && clamp_; ++q) clamp_ = table_[q] == std::min<int>(std::max<int>(q, lo_), hi_);
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    expect_u8(*in[0], "input");
    out[0] = {DType::U8, in[0]->shape};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext& ctx) const override {
    if (clamp_)
      kernels::q8_clamp(in[0]->as<uint8_t>(), in[0]->numel(), lo_, hi_, out[0]->as<uint8_t>(), ctx.threads);
    else
      kernels::q8_lut(in[0]->as<uint8_t>(), in[0]->numel(), table_, out[0]->as<uint8_t>(), ctx.threads);
  }
  std::string kernel_name() const override { return clamp_ ? "q8_clamp" : "q8_lut"; }

 private:
  uint8_t table_[256];
  uint8_t lo_ = 0, hi_ = 255;
  bool clamp_ = false;
};
SLIMRT_REGISTER_OP("qactivation", [](BuildContext& c) { return std::make_unique<QActivationOp>(c); });

}  // namespace
}  // namespace slimrt

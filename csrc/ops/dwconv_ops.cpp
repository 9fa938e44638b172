// conv2d nodes that are depthwise (groups == C, one input channel per group)
// run on the dedicated depthwise kernel; ops/gemm_ops.cpp asks here first.
#include "kernels/dwconv/dwconv.h"
#include "ops/common.h"
#include "runtime/op.h"

namespace slimrt {
namespace {

// The depthwise shape for an NHWC input x (base: kernel, strides, dilations, pads, mult).
kernels::DwConv2dShape stage_shape(const kernels::DwConv2dShape& base, int64_t c, const std::vector<int64_t>& x) {
  if (x.size() != 4) shape_error("input must be NHWC, got " + shape_str(x));
  if (x[3] != c) shape_error("input has " + std::to_string(x[3]) + " channels, depthwise weights expect " + std::to_string(c));
  kernels::DwConv2dShape s = base;
  s.n = x[0]; s.h = x[1]; s.w = x[2]; s.c = x[3];
  kernels::dwconv2d_output_size(s);
  return s;
}

class DepthwiseConvOp : public Op {
 public:
  DepthwiseConvOp(BuildContext& c, const Tensor& w) : isa_(c.isa) {
    auto dims = ops::conv_weight_dims(c);
    o_ = dims[0];
    base_.kh = static_cast<int>(dims[1]);
    base_.kw = static_cast<int>(dims[2]);
    c_ = c.node.attr_int("groups");
    base_.mult = o_ / c_;
    auto st = c.node.attr_ints("strides"), dl = c.node.attr_ints("dilations"), pd = c.node.attr_ints("pads");
    base_.sh = static_cast<int>(st[0]); base_.sw = static_cast<int>(st[1]);
    base_.dh = static_cast<int>(dl[0]); base_.dw = static_cast<int>(dl[1]);
    base_.pt = static_cast<int>(pd[0]); base_.pl = static_cast<int>(pd[1]);
    base_.pb = static_cast<int>(pd[2]); base_.pr = static_cast<int>(pd[3]);
    // [O, KH, KW, 1] -> [KH, KW, O]
    int64_t taps = static_cast<int64_t>(base_.kh) * base_.kw;
    w_ = aligned_array<float>(taps * o_);
    for (int64_t o = 0; o < o_; ++o)
      for (int64_t t = 0; t < taps; ++t) w_[t * o_ + o] = w.as<float>()[o * taps + t];
    int bi;
    ridx_ = ops::residual_input(c, &bi);
    if (bi >= 0) bias_ = ops::vector_constant(c, bi, o_, "bias");
    act_ = ops::parse_act(c);
    if (base_.mult == 1 && ridx_ < 0) {
      stage_.base = base_;
      stage_.c = c_;
      stage_.w = w_.get();
      stage_.ep.bias = bias_;
      stage_.ep.act = act_.first;
      stage_.ep.alpha = act_.second;
      stage_.isa = isa_;
      stage_.inputs = c.node.inputs.size();
    }
  }
  kernels::DwConv2dShape shape_of(const std::vector<int64_t>& x) const { return stage_shape(base_, c_, x); }
  const ops::DepthwiseStage* stage() const { return stage_.w ? &stage_ : nullptr; }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    ops::expect_f32(*in[0], "input");
    auto s = shape_of(in[0]->shape);
    out[0] = {DType::F32, {s.n, s.oh, s.ow, o_}};
    ops::check_residual(in, ridx_, out[0]);
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    Epilogue ep;
    ep.bias = bias_;
    ep.act = act_.first;
    ep.alpha = act_.second;
    if (ridx_ >= 0) {
      ep.residual = in[ridx_]->as<float>();
      ep.ldr = o_;
    }
    kernels::dwconv2d(shape_of(in[0]->shape()), in[0]->as<float>(), w_.get(), ep, out[0]->as<float>(), isa_, ctx.threads);
  }
  bool reads_at_run(size_t i) const override { return i == 0 || static_cast<int>(i) == ridx_; }
  std::string kernel_name() const override { return std::string("dwconv_") + isa_name(isa_); }
 private:
  Isa isa_;
  int ridx_ = -1;
  int64_t o_, c_;
  kernels::DwConv2dShape base_;
  AlignedPtr<float> w_;
  const float* bias_ = nullptr;
  std::pair<Act, float> act_;
  ops::DepthwiseStage stage_;  // set when the op fuses into a following pointwise conv
};

}  // namespace

kernels::DwConv2dShape ops::DepthwiseStage::shape_of(const std::vector<int64_t>& x) const {
  return stage_shape(base, c, x);
}

const ops::DepthwiseStage* ops::depthwise_stage(const Op& op) {
  auto* d = dynamic_cast<const DepthwiseConvOp*>(&op);
  return d ? d->stage() : nullptr;
}

std::unique_ptr<Op> ops::make_depthwise_conv(BuildContext& c) {
  auto dims = ops::conv_weight_dims(c);
  int64_t groups = c.node.attr_int("groups");
  if (groups <= 1 || dims[3] != 1 || dims[0] % groups) return nullptr;
  const Tensor& w = c.dense_constant(1);
  if (w.info.dtype != DType::F32) return nullptr;
  return std::make_unique<DepthwiseConvOp>(c, w);
}

}  // namespace slimrt

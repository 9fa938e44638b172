// max_pool / avg_pool / global_avg_pool / global_max_pool (NHWC).
#include "kernels/pool/pool.h"
#include "ops/common.h"
#include "runtime/op.h"

namespace slimrt {
namespace {

class PoolOp : public Op {
 public:
  PoolOp(BuildContext& c, kernels::PoolKind kind) : isa_(c.isa), kind_(kind), base_(ops::pool_window(c)) {
    base_.count_include_pad = kind == kernels::PoolKind::Max || c.node.attr_int("count_include_pad") != 0;
  }
  kernels::Pool2dShape shape_of(const std::vector<int64_t>& x) const { return ops::pool_shape(base_, x); }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    ops::expect_f32(*in[0], "input");
    auto s = shape_of(in[0]->shape);
    out[0] = {DType::F32, {s.n, s.oh, s.ow, s.c}};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    kernels::pool2d(kind_, in[0]->as<float>(), out[0]->as<float>(), shape_of(in[0]->shape()), isa_, ctx.threads);
  }
  std::string kernel_name() const override {
    return std::string(kind_ == kernels::PoolKind::Max ? "maxpool_" : "avgpool_") + isa_name(isa_);
  }
 private:
  Isa isa_;
  kernels::PoolKind kind_;
  kernels::Pool2dShape base_;
};

class GlobalPoolOp : public Op {
 public:
  GlobalPoolOp(BuildContext& c, kernels::PoolKind kind)
      : isa_(c.isa), kind_(kind), keep_(c.node.attr_int("keepdims") != 0) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    ops::expect_f32(*in[0], "input");
    const auto& x = in[0]->shape;
    if (x.size() != 4) shape_error("global pooling input must be NHWC, got " + shape_str(x));
    if (x[1] * x[2] == 0) shape_error("global pooling over an empty image");
    out[0] = keep_ ? TensorInfo{DType::F32, {x[0], 1, 1, x[3]}} : TensorInfo{DType::F32, {x[0], x[3]}};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*, const RunContext& ctx) const override {
    const auto& x = in[0]->shape();
    kernels::global_pool(kind_, in[0]->as<float>(), out[0]->as<float>(), x[0], x[1] * x[2], x[3], isa_, ctx.threads);
  }
  std::string kernel_name() const override {
    return std::string(kind_ == kernels::PoolKind::Max ? "global_max_" : "global_avg_") + isa_name(isa_);
  }
 private:
  Isa isa_;
  kernels::PoolKind kind_;
  bool keep_;
};

SLIMRT_REGISTER_OP("max_pool", [](BuildContext& c) { return std::make_unique<PoolOp>(c, kernels::PoolKind::Max); });
SLIMRT_REGISTER_OP("avg_pool", [](BuildContext& c) { return std::make_unique<PoolOp>(c, kernels::PoolKind::Avg); });
SLIMRT_REGISTER_OP("global_max_pool", [](BuildContext& c) { return std::make_unique<GlobalPoolOp>(c, kernels::PoolKind::Max); });
SLIMRT_REGISTER_OP("global_avg_pool", [](BuildContext& c) { return std::make_unique<GlobalPoolOp>(c, kernels::PoolKind::Avg); });

}  // namespace
}  // namespace slimrt

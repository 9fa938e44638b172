// dense, matmul and conv2d: the ops that run on the packed GEMM.
// Weights are constants packed once per session for the session's ISA.
#include <algorithm>
#include <cstring>

#include "core/threadpool.h"
#include "kernels/gemm/conv2d.h"
#include "kernels/gemm/sgemm.h"
#include "ops/common.h"
#include "ops/weights.h"
#include "runtime/op.h"

namespace slimrt {
namespace {

using kernels::PackedSgemmB;

// ---- dense: y[..., N] = act(x[..., K] W^T + b) ---------------------------------
class DenseOp : public Op {
 public:
  DenseOp(BuildContext& c) {
    const TensorDef& w = c.tensor_def(1);
    if (w.shape.size() != 2) c.fail(Code::Format, "weight must be 2-D [out, in], got " + shape_str(w.shape));
    n_ = w.shape[0];
    k_ = w.shape[1];
    w_.push_back(ops::make_weight_matrix(c, 1, {n_, 1, 1, k_}, 1, false));
    if (c.tune && !ops::weight_is_dense_f32(c, 1))
      w_.push_back(ops::make_weight_matrix(c, 1, {n_, 1, 1, k_}, 1, false, true));
    int bi;
    ridx_ = ops::residual_input(c, &bi);
    if (bi >= 0) bias_ = ops::vector_constant(c, bi, n_, "bias");
    ep_act_ = ops::parse_act(c);
  }
  int num_variants() const override { return static_cast<int>(w_.size()); }
  std::string variant_name(int v) const override { return w_[v]->name(); }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    ops::expect_f32(*in[0], "input");
    const auto& s = in[0]->shape;
    if (s.empty() || s.back() != k_)
      shape_error("input " + shape_str(s) + " does not end in " + std::to_string(k_) + " features");
    std::vector<int64_t> r = s;
    r.back() = n_;
    out[0] = {DType::F32, r};
    ops::check_residual(in, ridx_, out[0]);
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    size_t ws = 0;
    for (auto& w : w_) ws = std::max(ws, w->dense_workspace(in[0]->numel() / k_, threads));
    return ws;
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    int64_t m = in[0]->numel() / k_;
    Epilogue ep;
    ep.bias = bias_;
    ep.act = ep_act_.first;
    ep.alpha = ep_act_.second;
    if (ridx_ >= 0) {
      ep.residual = in[ridx_]->as<float>();
      ep.ldr = n_;
    }
    w_[ctx.variant]->dense(m, in[0]->as<float>(), k_, out[0]->as<float>(), n_, ep, ws, ctx.threads);
  }
  bool reads_at_run(size_t i) const override { return i == 0 || static_cast<int>(i) == ridx_; }
  std::string kernel_name() const override { return w_[0]->name(); }

 private:
  int ridx_ = -1;
  int64_t n_ = 0, k_ = 0;
  std::vector<std::unique_ptr<ops::WeightMatrix>> w_;  // [native format, fp32 decoding when tuning]
  const float* bias_ = nullptr;
  std::pair<Act, float> ep_act_;
};
SLIMRT_REGISTER_OP("dense", [](BuildContext& c) { return std::make_unique<DenseOp>(c); });

// ---- matmul: batched a @ b with numpy broadcasting over leading dims -----------------
class MatmulOp : public Op {
 public:
  MatmulOp(BuildContext& c) : isa_(c.isa), trans_b_(c.node.attr_int("trans_b") != 0) {
    act_ = ops::parse_act(c);
    if (c.is_constant(1) && c.tensor_def(1).shape.size() == 2) {
      bshape_ = c.tensor_def(1).shape;
      if (trans_b_) {  // [N, K]: any storage format
        wm_ = ops::make_weight_matrix(c, 1, {bshape_[0], 1, 1, bshape_[1]}, 1, false);
      } else {
        const Tensor& b = c.dense_constant(1);
        if (b.info.dtype == DType::F32)
          packed_ = kernels::pack_sgemm_b_kn(b.as<float>(), bshape_[0], bshape_[1], bshape_[1], isa_);
      }
    }
  }
  void dims(const std::vector<int64_t>& a, const std::vector<int64_t>& b, int64_t* m, int64_t* k, int64_t* n,
            std::vector<int64_t>* batch) const {
    if (a.size() < 2 || b.size() < 2) shape_error("matmul needs inputs of rank >= 2");
    *m = a[a.size() - 2];
    *k = a.back();
    int64_t kb = trans_b_ ? b.back() : b[b.size() - 2];
    *n = trans_b_ ? b[b.size() - 2] : b.back();
    if (kb != *k) shape_error("matmul: " + shape_str(a) + " @ " + shape_str(b) + (trans_b_ ? "^T" : "") + " inner dims differ");
    *batch = broadcast_shapes(std::vector<int64_t>(a.begin(), a.end() - 2), std::vector<int64_t>(b.begin(), b.end() - 2));
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    ops::expect_f32(*in[0], "a");
    ops::expect_f32(*in[1], "b");
    int64_t m, k, n;
    std::vector<int64_t> batch;
    dims(in[0]->shape, in[1]->shape, &m, &k, &n, &batch);
    batch.push_back(m);
    batch.push_back(n);
    out[0] = {DType::F32, batch};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    const auto& as = in[0]->shape();
    const auto& bs = in[1]->shape();
    int64_t m, k, n;
    std::vector<int64_t> batch;
    dims(as, bs, &m, &k, &n, &batch);
    Epilogue ep;
    ep.act = act_.first;
    ep.alpha = act_.second;
    const float* a = in[0]->as<float>();
    const float* b = in[1]->as<float>();
    float* y = out[0]->as<float>();
    if (wm_) {  // constant right operand: one GEMM over all leading rows
      wm_->dense(in[0]->numel() / k, a, k, y, n, ep, ws, ctx.threads);
      return;
    }
    if (packed_) {
      kernels::sgemm(in[0]->numel() / k, a, k, *packed_, y, n, ep, ctx.threads);
      return;
    }
    int64_t nb = 1;
    for (int64_t d : batch) nb *= d;
    std::vector<int64_t> abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
    int64_t amat = m * k, bmat = k * n;
    auto offset = [&](const std::vector<int64_t>& sub, int64_t idx) {
      // index into a broadcast sub-batch
      int64_t off = 0, stride = 1;
      for (int64_t d = static_cast<int64_t>(batch.size()) - 1, sd = static_cast<int64_t>(sub.size()) - 1; d >= 0; --d, --sd) {
        int64_t i = idx % batch[d];
        idx /= batch[d];
        if (sd >= 0) {
          if (sub[sd] != 1) off += i * stride;
          stride *= sub[sd];
        }
      }
      return off;
    };
    // Parallel over batch entries when there are several, else inside the GEMM.
    int inner_threads = nb >= ctx.threads ? 1 : ctx.threads;
    ThreadPool::global().run(nb, nb >= ctx.threads ? ctx.threads : 1, [&](int64_t i) {
      kernels::sgemm_nn(m, n, k, a + offset(abatch, i) * amat, k, b + offset(bbatch, i) * bmat,
                        trans_b_ ? k : n, trans_b_, y + i * m * n, n, ep, isa_, inner_threads);
    });
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    return wm_ ? wm_->dense_workspace(in[0]->numel() / std::max<int64_t>(1, in[0]->shape.back()), threads) : 0;
  }
  bool reads_at_run(size_t i) const override { return i == 0 || !(packed_ || wm_); }
  std::string kernel_name() const override {
    return wm_ ? wm_->name() : std::string(packed_ ? "sgemm_" : "sgemm_nn_") + isa_name(isa_);
  }

 private:
  Isa isa_;
  bool trans_b_;
  std::pair<Act, float> act_;
  std::vector<int64_t> bshape_;
  std::unique_ptr<PackedSgemmB> packed_;
  std::unique_ptr<ops::WeightMatrix> wm_;
};
SLIMRT_REGISTER_OP("matmul", [](BuildContext& c) { return std::make_unique<MatmulOp>(c); });

// ---- conv2d (NHWC) on the packed GEMM ------------------------------------------------
class Conv2dOp : public Op {
 public:
  Conv2dOp(BuildContext& c) : isa_(c.isa), ninputs_(c.node.inputs.size()) {
    auto dims = ops::conv_weight_dims(c);
    o_ = dims[0];
    kh_ = dims[1];
    kw_ = dims[2];
    cg_ = dims[3];
    groups_ = c.node.attr_int("groups");
    if (o_ % groups_) c.fail(Code::Format, "output channels " + std::to_string(o_) + " not divisible by groups");
    auto st = c.node.attr_ints("strides"), dl = c.node.attr_ints("dilations"), pd = c.node.attr_ints("pads");
    sh_ = st[0]; sw_ = st[1]; dh_ = dl[0]; dw_ = dl[1];
    pt_ = pd[0]; pl_ = pd[1]; pb_ = pd[2]; pr_ = pd[3];
    w_.push_back(ops::make_weight_matrix(c, 1, dims, groups_, true));
    if (c.tune && !ops::weight_is_dense_f32(c, 1)) {
      w_.push_back(ops::make_weight_matrix(c, 1, dims, groups_, true, true));
    } else if (c.tune) {  // dense fp32: the other fp32 path, which wins where the shape rule cannot see it
      if (auto alt = ops::make_conv_alternative(c, 1, dims, groups_)) w_.push_back(std::move(alt));
    }
    // A 3x3 stride-1 convolution may also run Winograd F(4x4, 3x3) on fp32 weights: the last variant, packed
    // only when a plan chooses it or the tuner times it, from the mapped file (dense fp32) or, when tuning a
    // compressed weight, from the fp32 decoding its fp32 variant already made.
    if (kh_ == 3 && kw_ == 3 && sh_ == 1 && sw_ == 1 && dh_ == 1 && dw_ == 1 && groups_ == 1 &&
        isa_ != Isa::Scalar && (ops::weight_is_dense_f32(c, 1) || c.tune)) {
      const Tensor& w = c.dense_constant(1);
      if (w.info.dtype == DType::F32) wino_src_ = w.as<float>();
    }
    int bi;
    ridx_ = ops::residual_input(c, &bi);
    if (bi >= 0) bias_ = ops::vector_constant(c, bi, o_, "bias");
    act_ = ops::parse_act(c);
  }
  kernels::Conv2dShape shape_of(const std::vector<int64_t>& s) const {
    kernels::Conv2dShape cs{};
    cs.N = s[0]; cs.H = s[1]; cs.W = s[2]; cs.C = s[3]; cs.O = o_; cs.KH = kh_; cs.KW = kw_;
    cs.stride_h = sh_; cs.stride_w = sw_; cs.dil_h = dh_; cs.dil_w = dw_;
    cs.pad_t = pt_; cs.pad_l = pl_; cs.pad_b = pb_; cs.pad_r = pr_; cs.groups = groups_;
    return cs;
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    ops::expect_f32(*in[0], "input");
    const auto& s = in[0]->shape;
    if (s.size() != 4) shape_error("input must be NHWC, got " + shape_str(s));
    if (s[3] != cg_ * groups_)
      shape_error("input has " + std::to_string(s[3]) + " channels, weights expect " + std::to_string(cg_ * groups_));
    int64_t oh = ops::conv_out(s[1], kh_, sh_, dh_, pt_, pb_), ow = ops::conv_out(s[2], kw_, sw_, dw_, pl_, pr_);
    if (oh <= 0 || ow <= 0) shape_error("input " + shape_str(s) + " is smaller than the kernel");
    out[0] = {DType::F32, {s[0], oh, ow, o_}};
    ops::check_residual(in, ridx_, out[0]);
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    size_t ws = 0;
    for (auto& w : w_) ws = std::max(ws, w->conv_workspace(shape_of(in[0]->shape), threads));
    if (wino_src_) ws = std::max(ws, kernels::conv2d_winograd_workspace_bytes(shape_of(in[0]->shape), isa_, threads));
    return ws;
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    const ops::WeightMatrix& w = ctx.variant == wino_variant() ? *wino_ : *w_[ctx.variant];
    w.conv(shape_of(in[0]->shape()), in[0]->as<float>(), out[0]->as<float>(), epilogue(in, ridx_), ws, ctx.threads);
  }
  bool reads_at_run(size_t i) const override { return i == 0 || static_cast<int>(i) == ridx_; }
  int num_variants() const override { return static_cast<int>(w_.size()) + (wino_src_ ? 1 : 0); }
  std::string variant_name(int v) const override {
    if (v == wino_variant()) return std::string("conv_winograd_") + isa_name(isa_);
    return w_[v]->conv_name(pointwise());
  }
  int default_variant(const std::vector<const TensorInfo*>& in) const override {
    return wino_src_ && kernels::conv2d_winograd_pays(shape_of(in[0]->shape), isa_) ? wino_variant() : 0;
  }
  void prepare_variant(int v, bool planned) const override {
    if (v != wino_variant()) return;
    if (!wino_) wino_ = ops::make_conv_winograd(wino_src_, {o_, kh_, kw_, cg_}, isa_);
    if (!wino_) throw Error(Code::Internal, "conv2d: no Winograd kernel for this ISA");
    wino_planned_ = wino_planned_ || planned;
  }
  void release_unplanned_variants() const override {
    if (!wino_planned_) wino_.reset();
  }
  std::string kernel_name() const override { return variant_name(0); }
  std::unique_ptr<Op> fuse_producer(const Op& producer) const override;

 private:
  friend class DwPointwiseOp;
  friend class ExpandDwPointwiseOp;
  bool pointwise() const { return kh_ == 1 && kw_ == 1 && sh_ == 1 && sw_ == 1 && !pt_ && !pl_ && !pb_ && !pr_; }
  // Bias, activation and the residual (input ri of `in`: a fused op's inputs differ from the node's).
  Epilogue epilogue(const std::vector<const Tensor*>& in, int ri) const {
    Epilogue ep;
    ep.bias = bias_;
    ep.act = act_.first;
    ep.alpha = act_.second;
    if (ri >= 0) {
      ep.residual = in[ri]->as<float>();
      ep.ldr = o_;
    }
    return ep;
  }
  Isa isa_;
  size_t ninputs_;  // the node's input count
  int ridx_ = -1;
  int64_t o_, kh_, kw_, cg_, groups_, sh_, sw_, dh_, dw_, pt_, pl_, pb_, pr_;
  // [native format, when tuning: its fp32 decoding, or for a dense fp32 weight the other fp32 path]
  std::vector<std::unique_ptr<ops::WeightMatrix>> w_;
  // Variant w_.size() where wino_src_ is set (a 3x3 stride-1 convolution, see the constructor): the Winograd
  // weights, packed by prepare_variant (plan lock held), dropped again if only the tuner used them.
  int wino_variant() const { return wino_src_ ? static_cast<int>(w_.size()) : -1; }
  const float* wino_src_ = nullptr;  // the fp32 weights [o_][3][3][cg_]: in the mapped file, or decoded
  mutable std::unique_ptr<ops::WeightMatrix> wino_;
  mutable bool wino_planned_ = false;
  const float* bias_ = nullptr;
  std::pair<Act, float> act_;
};

// ---- depthwise conv + the pointwise conv that alone reads it, as one op ----------------------------
// Program::fuse_ops builds it from the two nodes' ops (Conv2dOp::fuse_producer). A depthwise output
// bigger than L2 is computed a few output rows at a time into a per-thread buffer that stays in the
// cache, and the pointwise GEMM consumes each chunk at once: the depthwise result never goes out to
// L3 / DRAM and back. Smaller ones run the two kernels one after the other, as separate nodes would.
// Inputs: the depthwise node's (x first), then the pointwise node's inputs 1.. (weights, bias, residual).
class DwPointwiseOp : public Op {
 public:
  DwPointwiseOp(const ops::DepthwiseStage& dw, const Conv2dOp& pw)
      : dw_(dw), pw_(pw), ridx_(pw.ridx_ >= 0 ? static_cast<int>(dw.inputs) + pw.ridx_ - 1 : -1) {}

  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    ops::expect_f32(*in[0], "input");
    const auto s = dw_.shape_of(in[0]->shape);
    out[0] = {DType::F32, {s.n, s.oh, s.ow, pw_.o_}};
    ops::check_residual(in, ridx_, out[0]);
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    const auto s = dw_.shape_of(in[0]->shape);
    const ops::FusedChunks g = chunks(s);
    if (g.chunked) return static_cast<size_t>(std::max(1, threads)) * slot_bytes(s, g);
    size_t pws = 0;
    for (auto& w : pw_.w_) pws = std::max(pws, w->conv_workspace(pw_shape(s.n, s.oh, s.ow), threads));
    return g.align(g.mid_bytes) + g.align(pws);
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    const kernels::DwConv2dShape s = dw_.shape_of(in[0]->shape());
    const ops::FusedChunks g = chunks(s);
    const float* x = in[0]->as<float>();
    float* y = out[0]->as<float>();
    Epilogue ep = pw_.epilogue(in, ridx_);
    const ops::WeightMatrix& wm = *pw_.w_[ctx.variant];
    auto* base = static_cast<uint8_t*>(ws);
    if (!g.chunked) {
      auto* mid = reinterpret_cast<float*>(base);
      kernels::dwconv2d(s, x, dw_.w, dw_.ep, mid, dw_.isa, ctx.threads);
      wm.conv(pw_shape(s.n, s.oh, s.ow), mid, y, ep, base + g.align(g.mid_bytes), ctx.threads);
      return;
    }
    const kernels::DwConvKernels& dk = kernels::dwconv_kernels(dw_.isa);
    const unsigned flags = kernels::dwconv2d_flags(s, /*output_cached=*/true);
    const int64_t row_floats = s.ow * dw_.c;
    // An output far bigger than the caches (a big batch) is written around them, as the unfused GEMM would.
    ep.stream = g.rows * s.ow * pw_.o_ * static_cast<int64_t>(sizeof(float)) >= kStreamOutputBytes;
    g.run(ctx.threads, ws, slot_bytes(s, g), [&](int64_t r0, int64_t r1, int64_t next, uint8_t* slot) {
      auto* mid = reinterpret_cast<float*>(slot);
      // The row kernel writes output row r at y + r * row_floats: rows r0.. land at mid.
      auto* yb = reinterpret_cast<float*>(reinterpret_cast<uintptr_t>(mid) - static_cast<uintptr_t>(r0 * row_floats) * sizeof(float));
      dk.rows(x, dw_.w, dw_.ep, yb, s, r0, r1, flags);
      Epilogue e = ep;
      if (e.residual) e.residual += r0 * s.ow * pw_.o_;
      if (next >= 0) {  // the next chunk's depthwise input, fetched while the GEMM computes
        const auto [off, len] = g.input_span(s, next, sizeof(float));
        e.prefetch = reinterpret_cast<const uint8_t*>(x) + off;
        e.prefetch_bytes = len;
      }
      wm.conv(pw_shape(1, r1 - r0, s.ow), mid, y + r0 * s.ow * pw_.o_, e, slot + g.align(g.mid_bytes), 1);
    });
  }
  bool reads_at_run(size_t i) const override { return i == 0 || static_cast<int>(i) == ridx_; }
  int num_variants() const override { return pw_.num_variants(); }
  std::string variant_name(int v) const override {
    return std::string("dwconv_") + isa_name(dw_.isa) + "+" + pw_.variant_name(v);
  }
  std::string kernel_name() const override { return variant_name(0); }
  std::unique_ptr<Op> fuse_producer(const Op& producer) const override;

 private:
  friend class ExpandDwPointwiseOp;
  ops::FusedChunks chunks(const kernels::DwConv2dShape& s) const {
    return ops::FusedChunks(s.n * s.oh, s.ow, s.ow * dw_.c * static_cast<int64_t>(sizeof(float)));
  }
  // One thread's workspace in chunked mode: a chunk of depthwise output, then the GEMM's scratch.
  size_t slot_bytes(const kernels::DwConv2dShape& s, const ops::FusedChunks& g) const {
    size_t pws = 0;
    for (auto& w : pw_.w_) pws = std::max(pws, w->conv_workspace(pw_shape(1, g.R, s.ow), 1));
    return g.align(g.mid_bytes) + g.align(pws);
  }
  kernels::Conv2dShape pw_shape(int64_t n, int64_t h, int64_t w) const { return pw_.shape_of({n, h, w, dw_.c}); }

  ops::DepthwiseStage dw_;  // pointers into the depthwise op, which the Program keeps
  const Conv2dOp& pw_;
  int ridx_;
};

// ---- pointwise expansion + depthwise + pointwise projection, as one op (an inverted residual block) -----
// DwPointwiseOp::fuse_producer builds it when the depthwise input is a pointwise conv's output that
// nothing else reads. An expansion output of at least FusedChunks::kFuseMinBytes is never written
// whole: the work is split into runs of depthwise output rows of one image (a few per thread), and
// each thread walks its run a chunk of rows at a time, computing just the expansion rows that chunk
// reads into a buffer that slides down the image (rows shared with the previous chunk are kept, so
// each is computed once per run, plus the kernel's halo at the start of a run), then the depthwise
// rows and the projection, all in L2. A smaller expansion runs whole, then the DwPointwiseOp.
// Inputs: the expansion node's (x first), then the DwPointwiseOp's inputs 1.. (the depthwise node's,
// then the projection node's).
class ExpandDwPointwiseOp : public Op {
 public:
  ExpandDwPointwiseOp(const Conv2dOp& ex, const DwPointwiseOp& dp)
      : ex_(ex), dp_(dp), shift_(ex.ninputs_ - 1),
        ridx_(dp.ridx_ >= 0 ? dp.ridx_ + static_cast<int>(shift_) : -1) {}

  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    std::vector<TensorInfo> e(1);
    ex_.infer(in, e);  // x against the expansion (it reads input 0 only: no residual)
    dp_.infer(dp_inputs(in, &e[0]), out);
  }
  size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const override {
    const std::vector<int64_t> e = e_shape(in[0]->shape);
    if (chunked(e)) return static_cast<size_t>(std::max(1, threads)) * slot_bytes(in[0]->shape, chunks(e));
    TensorInfo ei{DType::F32, e};
    return align(ei.bytes()) + std::max(ex_.w_[0]->conv_workspace(ex_.shape_of(in[0]->shape), threads),
                                        dp_.workspace(dp_inputs(in, &ei), threads));
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
           const RunContext& ctx) const override {
    const std::vector<int64_t>& xs = in[0]->shape();
    const std::vector<int64_t> es = e_shape(xs);
    const float* x = in[0]->as<float>();
    auto* base = static_cast<uint8_t*>(ws);
    const Epilogue eep = ex_.epilogue(in, -1);
    const ops::WeightMatrix& ew = *ex_.w_[0];
    if (!chunked(es)) {
      Tensor e{{DType::F32, es}, base};
      ew.conv(ex_.shape_of(xs), x, e.as<float>(), eep, base + align(e.info.bytes()), ctx.threads);
      dp_.run(dp_inputs(in, &e), out, base + align(e.info.bytes()), ctx);
      return;
    }
    const ops::ExpandChunks g = chunks(es);
    const kernels::DwConv2dShape& s = g.s;
    const int64_t cin = xs[3], O = dp_.pw_.o_, erow = s.w * s.c, mrow = s.ow * s.c;
    const size_t mid_at = g.mid_at(), scratch_at = g.scratch_at();
    const kernels::DwConvKernels& dk = kernels::dwconv_kernels(dp_.dw_.isa);
    const ops::WeightMatrix& pw = *dp_.pw_.w_[ctx.variant];
    float* y = out[0]->as<float>();
    Epilogue pep = dp_.pw_.epilogue(in, ridx_);
    pep.stream = s.n * s.oh * s.ow * O * static_cast<int64_t>(sizeof(float)) >= kStreamOutputBytes;
    g.run(
        ctx.threads, ws, slot_bytes(xs, g),
        [&](int64_t n, int64_t i0, int64_t i1, uint8_t* dst, uint8_t* slot) {
          ew.conv(ex_.shape_of({1, i1 - i0, s.w, cin}), x + (n * s.h + i0) * s.w * cin, reinterpret_cast<float*>(dst),
                  eep, slot + scratch_at, 1);
        },
        [&](int64_t n, int64_t r0, int64_t r1, int64_t a, uint8_t* slot) {
          // The row kernel reads input row i of image n at x + (n*h + i) * erow and writes output row r
          // (flattened n*oh + r) at y + r * mrow: based so that rows a.. and r0.. land in the slot.
          const int64_t g0 = n * s.oh + r0, g1 = n * s.oh + r1;
          auto* mid = reinterpret_cast<float*>(slot + mid_at);
          const auto* xb = reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(slot) -
                                                          static_cast<uintptr_t>((n * s.h + a) * erow) * sizeof(float));
          auto* yb = reinterpret_cast<float*>(reinterpret_cast<uintptr_t>(mid) -
                                              static_cast<uintptr_t>(g0 * mrow) * sizeof(float));
          dk.rows(xb, dp_.dw_.w, dp_.dw_.ep, yb, s, g0, g1, 0);
          Epilogue e = pep;
          if (e.residual) e.residual += g0 * s.ow * O;
          pw.conv(dp_.pw_shape(1, r1 - r0, s.ow), mid, y + g0 * s.ow * O, e, slot + scratch_at, 1);
        });
  }
  bool reads_at_run(size_t i) const override {
    return i == 0 || static_cast<int>(i) == ridx_;
  }
  int num_variants() const override { return dp_.num_variants(); }
  std::string variant_name(int v) const override { return ex_.variant_name(0) + "+" + dp_.variant_name(v); }
  std::string kernel_name() const override { return variant_name(0); }

 private:
  static size_t align(size_t b) { return ops::FusedChunks::align(b); }
  std::vector<int64_t> e_shape(const std::vector<int64_t>& x) const { return {x[0], x[1], x[2], dp_.dw_.c}; }
  static bool chunked(const std::vector<int64_t>& e) { return ops::ExpandChunks::walks(e, sizeof(float)); }
  ops::ExpandChunks chunks(const std::vector<int64_t>& e) const {
    return ops::ExpandChunks(dp_.dw_.shape_of(e), sizeof(float));
  }
  // One thread's slot (ops::ExpandChunks), with the scratch of either GEMM.
  size_t slot_bytes(const std::vector<int64_t>& xs, const ops::ExpandChunks& g) const {
    size_t scratch = ex_.w_[0]->conv_workspace(ex_.shape_of({1, g.erows, g.s.w, xs[3]}), 1);
    for (auto& w : dp_.pw_.w_) scratch = std::max(scratch, w->conv_workspace(dp_.pw_shape(1, g.R, g.s.ow), 1));
    return g.slot_bytes(scratch);
  }
  // The DwPointwiseOp's inputs: the expansion output e, then this op's inputs past the expansion's.
  template <typename T>
  std::vector<const T*> dp_inputs(const std::vector<const T*>& in, const T* e) const {
    return ops::inner_inputs(in, e, 1 + shift_);
  }

  const Conv2dOp& ex_;
  const DwPointwiseOp& dp_;
  size_t shift_;  // inputs of the expansion past x: the DwPointwiseOp's input i is this op's i + shift_
  int ridx_;      // the projection's residual among this op's inputs, or -1
};

std::unique_ptr<Op> DwPointwiseOp::fuse_producer(const Op& producer) const {
  const auto* ex = dynamic_cast<const Conv2dOp*>(&producer);
  if (!ex || !ex->pointwise() || ex->groups_ != 1 || ex->ridx_ >= 0 || ex->o_ != dw_.c) return nullptr;
  return std::make_unique<ExpandDwPointwiseOp>(*ex, *this);
}

std::unique_ptr<Op> Conv2dOp::fuse_producer(const Op& producer) const {
  const ops::DepthwiseStage* dw = ops::depthwise_stage(producer);
  if (!dw || !pointwise() || groups_ != 1 || dw->c != cg_) return nullptr;
  return std::make_unique<DwPointwiseOp>(*dw, *this);
}

// The factory picks the depthwise kernel for depthwise convolutions (ops/dwconv registers it).
SLIMRT_REGISTER_OP("conv2d", [](BuildContext& c) -> std::unique_ptr<Op> {
  if (auto dw = ops::make_depthwise_conv(c)) return dw;
  return std::make_unique<Conv2dOp>(c);
});

}  // namespace
}  // namespace slimrt

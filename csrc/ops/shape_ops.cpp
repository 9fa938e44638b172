// Ops that move or select data without arithmetic: reshape, flatten (views),
// concat, slice, embedding; and the reductions reduce_mean / reduce_max.
#include <algorithm>
#include <cstring>
#include <limits>

#include "core/threadpool.h"
#include "runtime/op.h"

namespace slimrt {
namespace {

int64_t prod(const std::vector<int64_t>& s, size_t b, size_t e) {
  int64_t p = 1;
  for (size_t i = b; i < e; ++i) p *= s[i];
  return p;
}

// ---- reshape / flatten: output 0 aliases input 0 ------------------------------
class ReshapeOp : public Op {
 public:
  explicit ReshapeOp(std::vector<int64_t> spec) : spec_(std::move(spec)) {}
  bool is_view() const override { return true; }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    const auto& s = in[0]->shape;
    std::vector<int64_t> r(spec_.size());
    int infer_at = -1;
    int64_t known = 1;
    for (size_t i = 0; i < spec_.size(); ++i) {
      if (spec_[i] == 0) {
        if (i >= s.size()) shape_error("reshape: 0 at position " + std::to_string(i) + " beyond input rank");
        r[i] = s[i];
      } else if (spec_[i] == -1) {
        infer_at = static_cast<int>(i);
        continue;
      } else {
        r[i] = spec_[i];
      }
      known *= r[i];
    }
    int64_t total = in[0]->numel();
    if (infer_at >= 0) {
      if (known == 0 || total % known) shape_error("reshape: cannot reshape " + shape_str(s) + " to spec " + shape_str(spec_));
      r[infer_at] = total / known;
    } else if (known != total) {
      shape_error("reshape: cannot reshape " + shape_str(s) + " to " + shape_str(r));
    }
    out[0] = {in[0]->dtype, r};
  }
  void run(const std::vector<const Tensor*>&, const std::vector<Tensor*>&, void*, const RunContext&) const override {}
  std::string kernel_name() const override { return "view"; }
 private:
  std::vector<int64_t> spec_;
};

class FlattenOp : public Op {
 public:
  explicit FlattenOp(int64_t axis) : axis_(axis) {}
  bool is_view() const override { return true; }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    const auto& s = in[0]->shape;
    int64_t a = axis_ < 0 ? axis_ + static_cast<int64_t>(s.size()) : axis_;
    if (a < 0 || a > static_cast<int64_t>(s.size())) shape_error("flatten: axis out of range for " + shape_str(s));
    std::vector<int64_t> r(s.begin(), s.begin() + a);
    r.push_back(prod(s, a, s.size()));
    out[0] = {in[0]->dtype, r};
  }
  void run(const std::vector<const Tensor*>&, const std::vector<Tensor*>&, void*, const RunContext&) const override {}
  std::string kernel_name() const override { return "view"; }
 private:
  int64_t axis_;
};

SLIMRT_REGISTER_OP("reshape", [](BuildContext& c) { return std::make_unique<ReshapeOp>(c.node.attr_ints("shape")); });
SLIMRT_REGISTER_OP("flatten", [](BuildContext& c) { return std::make_unique<FlattenOp>(c.node.attr_int("axis")); });

// ---- concat --------------------------------------------------------------------
class ConcatOp : public Op {
 public:
  explicit ConcatOp(int64_t axis) : axis_(axis) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    const auto& s0 = in[0]->shape;
    int64_t a = normalize_axis(axis_, s0.size(), "concat");
    std::vector<int64_t> r = s0;
    r[a] = 0;
    for (const TensorInfo* t : in) {
      if (t->dtype != in[0]->dtype) shape_error("concat: inputs of different dtypes");
      if (t->shape.size() != s0.size()) shape_error("concat: inputs of different ranks");
      for (size_t d = 0; d < s0.size(); ++d)
        if (static_cast<int64_t>(d) != a && t->shape[d] != s0[d])
          shape_error("concat: shapes " + shape_str(s0) + " and " + shape_str(t->shape) + " differ off the axis");
      r[a] += t->shape[a];
    }
    out[0] = {in[0]->dtype, r};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext& ctx) const override {
    const auto& s = out[0]->shape();
    int64_t a = normalize_axis(axis_, s.size(), "concat");
    int64_t outer = prod(s, 0, a), inner = prod(s, a + 1, s.size());
    size_t es = dtype_size(out[0]->info.dtype);
    int64_t out_row = s[a] * inner * es;
    uint8_t* dst = out[0]->as<uint8_t>();
    parallel_for(outer, ctx.threads, std::max<int64_t>(1, 65536 / std::max<int64_t>(out_row, 1)),
                 [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        int64_t off = 0;
        for (const Tensor* t : in) {
          int64_t row = t->shape()[a] * inner * es;
          std::memcpy(dst + o * out_row + off, t->as<uint8_t>() + o * row, row);
          off += row;
        }
      }
    });
  }
  std::string kernel_name() const override { return "copy"; }
 private:
  int64_t axis_;
};
SLIMRT_REGISTER_OP("concat", [](BuildContext& c) { return std::make_unique<ConcatOp>(c.node.attr_int("axis")); });

// ---- slice (step 1) ------------------------------------------------------------
class SliceOp : public Op {
 public:
  SliceOp(std::vector<int64_t> axes, std::vector<int64_t> starts, std::vector<int64_t> ends)
      : axes_(std::move(axes)), starts_(std::move(starts)), ends_(std::move(ends)) {}
  void ranges(const std::vector<int64_t>& s, std::vector<int64_t>& b, std::vector<int64_t>& e) const {
    b.assign(s.size(), 0);
    e = s;
    for (size_t i = 0; i < axes_.size(); ++i) {
      int64_t a = normalize_axis(axes_[i], s.size(), "slice");
      auto clampi = [&](int64_t x) { if (x < 0) x += s[a]; return std::min(std::max<int64_t>(x, 0), s[a]); };
      b[a] = clampi(starts_[i]);
      e[a] = std::max(b[a], clampi(ends_[i]));
    }
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    std::vector<int64_t> b, e;
    ranges(in[0]->shape, b, e);
    std::vector<int64_t> r(b.size());
    for (size_t d = 0; d < b.size(); ++d) r[d] = e[d] - b[d];
    out[0] = {in[0]->dtype, r};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext&) const override {
    const auto& s = in[0]->shape();
    std::vector<int64_t> b, e;
    ranges(s, b, e);
    const auto& os = out[0]->shape();
    size_t es = dtype_size(in[0]->info.dtype);
    int64_t rank = s.size();
    if (rank == 0 || out[0]->numel() == 0) {
      if (rank == 0) std::memcpy(out[0]->data, in[0]->data, es);
      return;
    }
    // Copy contiguous innermost runs.
    std::vector<int64_t> istride(rank, 1);
    for (int64_t d = rank - 2; d >= 0; --d) istride[d] = istride[d + 1] * s[d + 1];
    int64_t run = os[rank - 1] * es, rows = out[0]->numel() / os[rank - 1];
    std::vector<int64_t> idx(rank, 0);
    const uint8_t* src = in[0]->as<uint8_t>();
    uint8_t* dst = out[0]->as<uint8_t>();
    for (int64_t r = 0; r < rows; ++r) {
      int64_t off = 0;
      for (int64_t d = 0; d < rank; ++d) off += (idx[d] + b[d]) * istride[d];
      std::memcpy(dst + r * run, src + off * es, run);
      for (int64_t d = rank - 2; d >= 0; --d) {
        if (++idx[d] < os[d]) break;
        idx[d] = 0;
      }
    }
  }
  std::string kernel_name() const override { return "copy"; }
 private:
  std::vector<int64_t> axes_, starts_, ends_;
};
SLIMRT_REGISTER_OP("slice", [](BuildContext& c) {
  auto axes = c.node.attr_ints("axes"), st = c.node.attr_ints("starts"), en = c.node.attr_ints("ends");
  if (axes.size() != st.size() || axes.size() != en.size()) c.fail(Code::Format, "axes, starts and ends differ in length");
  return std::make_unique<SliceOp>(axes, st, en);
});

// ---- embedding -------------------------------------------------------------------
class EmbeddingOp : public Op {
 public:
  explicit EmbeddingOp(const Tensor& table) : table_(table) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    if (in[0]->dtype != DType::I32 && in[0]->dtype != DType::I64) shape_error("embedding: ids must be int32 or int64");
    std::vector<int64_t> r = in[0]->shape;
    r.push_back(table_.shape()[1]);
    out[0] = {DType::F32, r};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext&) const override {
    int64_t n = in[0]->numel(), v = table_.shape()[0], d = table_.shape()[1];
    const float* tab = table_.as<float>();
    float* y = out[0]->as<float>();
    for (int64_t i = 0; i < n; ++i) {
      int64_t id = in[0]->info.dtype == DType::I64 ? in[0]->as<int64_t>()[i] : in[0]->as<int32_t>()[i];
      if (id < 0 || id >= v)
        throw Error(Code::InvalidArgument, "embedding: id " + std::to_string(id) + " out of range [0, " +
                                               std::to_string(v) + ")");
      std::memcpy(y + i * d, tab + id * d, d * sizeof(float));
    }
  }
  bool reads_at_run(size_t i) const override { return i == 0; }
  std::string kernel_name() const override { return "gather"; }
 private:
  Tensor table_;
};
SLIMRT_REGISTER_OP("embedding", [](BuildContext& c) {
  const Tensor& t = c.dense_constant(1);
  if (t.shape().size() != 2 || t.info.dtype != DType::F32) c.fail(Code::Format, "table must be a 2-D float tensor");
  return std::make_unique<EmbeddingOp>(t);
});

// ---- reduce_mean / reduce_max --------------------------------------------------------
class ReduceOp : public Op {
 public:
  ReduceOp(bool is_max, std::vector<int64_t> axes, bool keep) : max_(is_max), axes_(std::move(axes)), keep_(keep) {}
  std::vector<char> mask(size_t rank) const {
    std::vector<char> m(rank, 0);
    for (int64_t a : axes_) m[normalize_axis(a, rank, "reduce")] = 1;
    return m;
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    const auto& s = in[0]->shape;
    auto m = mask(s.size());
    std::vector<int64_t> r;
    for (size_t d = 0; d < s.size(); ++d) {
      if (!m[d]) r.push_back(s[d]);
      else if (keep_) r.push_back(1);
      if (m[d] && s[d] == 0 && max_) shape_error("reduce_max over an empty axis");
    }
    out[0] = {DType::F32, r};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext&) const override {
    const auto& s = in[0]->shape();
    size_t rank = s.size();
    auto m = mask(rank);
    // Output strides over the input index space (0 on reduced axes).
    std::vector<int64_t> ostr(rank, 0);
    int64_t st = 1;
    for (int64_t d = rank - 1; d >= 0; --d)
      if (!m[d]) { ostr[d] = st; st *= s[d]; }
    int64_t nout = out[0]->numel(), nin = in[0]->numel();
    float* y = out[0]->as<float>();
    const float* x = in[0]->as<float>();
    std::fill(y, y + nout, max_ ? -std::numeric_limits<float>::infinity() : 0.f);
    std::vector<int64_t> idx(rank, 0);
    int64_t o = 0;
    for (int64_t i = 0; i < nin; ++i) {
      y[o] = max_ ? std::max(y[o], x[i]) : y[o] + x[i];
      for (int64_t d = rank - 1; d >= 0; --d) {
        o += ostr[d];
        if (++idx[d] < s[d]) break;
        o -= ostr[d] * s[d];
        idx[d] = 0;
      }
    }
    if (!max_ && nout) {
      float inv = static_cast<float>(nout) / static_cast<float>(std::max<int64_t>(nin, 1));
      for (int64_t j = 0; j < nout; ++j) y[j] *= inv;
    }
  }
  std::string kernel_name() const override { return "reduce"; }
 private:
  bool max_;
  std::vector<int64_t> axes_;
  bool keep_;
};
SLIMRT_REGISTER_OP("reduce_mean", [](BuildContext& c) {
  return std::make_unique<ReduceOp>(false, c.node.attr_ints("axes"), c.node.attr_int("keepdims") != 0);
});
SLIMRT_REGISTER_OP("reduce_max", [](BuildContext& c) {
  return std::make_unique<ReduceOp>(true, c.node.attr_ints("axes"), c.node.attr_int("keepdims") != 0);
});

}  // namespace
}  // namespace slimrt

// Ops that move or select data without arithmetic: reshape, reshape_dims, flatten (views),
// concat, slice, slice_like, embedding; and the reductions reduce_mean / reduce_max.
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

// ---- reshape_dims: a reshape whose sizes may come from other tensors' shapes -------
// dims[j] > 0: that size; 0: x's dim j; -1: inferred (at most one); -2: the next pair of
// `refs` (input i >= 1, dim d) gives inputs[i].shape[d]. The reference inputs are only
// looked at for their shapes (e.g. the graph input that carries the sequence length).
// Output 0 aliases input 0.
class ReshapeDimsOp : public Op {
 public:
  ReshapeDimsOp(BuildContext& c) : dims_(c.node.attr_ints("dims")), refs_(c.node.attr_ints("refs")) {
    size_t nref = 0;
    int inferred = 0;
    for (int64_t d : dims_) {
      if (d < -2) c.fail(Code::Format, "dims entries must be >= -2");
      nref += d == -2;
      inferred += d == -1;
    }
    if (inferred > 1) c.fail(Code::Format, "dims has more than one -1");
    if (refs_.size() != 2 * nref) c.fail(Code::Format, "refs must hold one (input, dim) pair per -2 in dims");
    for (size_t k = 0; k < nref; ++k)
      if (refs_[2 * k] < 1 || refs_[2 * k] >= static_cast<int64_t>(c.node.inputs.size()))
        c.fail(Code::Format, "refs names input " + std::to_string(refs_[2 * k]) + ", not a reference input");
  }
  bool is_view() const override { return true; }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    const auto& s = in[0]->shape;
    std::vector<int64_t> r(dims_.size());
    int infer_at = -1;
    int64_t known = 1;
    size_t k = 0;
    for (size_t i = 0; i < dims_.size(); ++i) {
      int64_t d = dims_[i];
      if (d == 0) {
        if (i >= s.size()) shape_error("reshape_dims: 0 at position " + std::to_string(i) + " beyond input rank");
        r[i] = s[i];
      } else if (d == -1) {
        infer_at = static_cast<int>(i);
        continue;
      } else if (d == -2) {
        const auto& rs = in[refs_[2 * k]]->shape;
        int64_t a = normalize_axis(refs_[2 * k + 1], rs.size(), "reshape_dims reference");
        r[i] = rs[a];
        ++k;
      } else {
        r[i] = d;
      }
      known *= r[i];
    }
    int64_t total = in[0]->numel();
    if (infer_at >= 0) {
      if (known == 0 || total % known)
        shape_error("reshape_dims: cannot reshape " + shape_str(s) + " to " + shape_str(r) + " with one inferred dim");
      r[infer_at] = total / known;
    } else if (known != total) {
      shape_error("reshape_dims: cannot reshape " + shape_str(s) + " to " + shape_str(r));
    }
    out[0] = {in[0]->dtype, r};
  }
  void run(const std::vector<const Tensor*>&, const std::vector<Tensor*>&, void*, const RunContext&) const override {}
  bool reads_at_run(size_t i) const override { return i == 0; }
  std::string kernel_name() const override { return "view"; }
 private:
  std::vector<int64_t> dims_, refs_;
};
SLIMRT_REGISTER_OP("reshape_dims", [](BuildContext& c) { return std::make_unique<ReshapeDimsOp>(c); });

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

// Copies the box of `in` that starts at `begin` and has out's shape into `out` (contiguous innermost runs).
void copy_box(const Tensor& in, Tensor& out, const std::vector<int64_t>& begin) {
  const auto& s = in.shape();
  const auto& os = out.shape();
  size_t es = dtype_size(in.info.dtype);
  int64_t rank = s.size();
  if (rank == 0 || out.numel() == 0) {
    if (rank == 0) std::memcpy(out.data, in.data, es);
    return;
  }
  std::vector<int64_t> istride(rank, 1);
  for (int64_t d = rank - 2; d >= 0; --d) istride[d] = istride[d + 1] * s[d + 1];
  int64_t run = os[rank - 1] * es, rows = out.numel() / os[rank - 1];
  std::vector<int64_t> idx(rank, 0);
  const uint8_t* src = in.as<uint8_t>();
  uint8_t* dst = out.as<uint8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    int64_t off = 0;
    for (int64_t d = 0; d < rank; ++d) off += (idx[d] + begin[d]) * istride[d];
    std::memcpy(dst + r * run, src + off * es, run);
    for (int64_t d = rank - 2; d >= 0; --d) {
      if (++idx[d] < os[d]) break;
      idx[d] = 0;
    }
  }
}

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
    std::vector<int64_t> b, e;
    ranges(in[0]->shape(), b, e);
    copy_box(*in[0], *out[0], b);
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

// ---- slice_like: x[starts[i] : starts[i] + ref.shape[ref_axes[i]]] along axes[i] ------------
// The length comes from the reference input's shape (e.g. a position table cut to the
// sequence length of the ids); a length that does not fit x is an error, not a clip.
class SliceLikeOp : public Op {
 public:
  SliceLikeOp(BuildContext& c)
      : axes_(c.node.attr_ints("axes")), starts_(c.node.attr_ints("starts")), ref_axes_(c.node.attr_ints("ref_axes")) {
    if (axes_.size() != starts_.size() || axes_.size() != ref_axes_.size())
      c.fail(Code::Format, "axes, starts and ref_axes differ in length");
    for (int64_t st : starts_)
      if (st < 0) c.fail(Code::Format, "starts must be >= 0");
  }
  void box(const TensorInfo& x, const TensorInfo& ref, std::vector<int64_t>& b, std::vector<int64_t>& len) const {
    const auto& s = x.shape;
    b.assign(s.size(), 0);
    len = s;
    for (size_t i = 0; i < axes_.size(); ++i) {
      int64_t a = normalize_axis(axes_[i], s.size(), "slice_like");
      int64_t ra = normalize_axis(ref_axes_[i], ref.shape.size(), "slice_like reference");
      int64_t n = ref.shape[ra];
      if (starts_[i] + n > s[a])
        shape_error("length " + std::to_string(n) + " (dim " + std::to_string(ra) + " of input " +
                    shape_str(ref.shape) + ") exceeds the " + std::to_string(s[a] - starts_[i]) +
                    " available along axis " + std::to_string(a) + " of " + shape_str(s));
      b[a] = starts_[i];
      len[a] = n;
    }
  }
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    std::vector<int64_t> b, len;
    box(*in[0], *in[1], b, len);
    out[0] = {in[0]->dtype, len};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext&) const override {
    std::vector<int64_t> b, len;
    box(in[0]->info, in[1]->info, b, len);
    copy_box(*in[0], *out[0], b);
  }
  bool reads_at_run(size_t i) const override { return i == 0; }
  std::string kernel_name() const override { return "copy"; }
 private:
  std::vector<int64_t> axes_, starts_, ref_axes_;
};
SLIMRT_REGISTER_OP("slice_like", [](BuildContext& c) { return std::make_unique<SliceLikeOp>(c); });

// ---- embedding -------------------------------------------------------------------
// Table float32 [V][D] (any stored format, decoded at load), or int8 per row / per tensor
// (QInt8 axis 0 or -1), gathered as int8 rows and scaled: a quarter of the table's bytes.
class EmbeddingOp : public Op {
 public:
  EmbeddingOp(int64_t v, int64_t d, const float* f32, const int8_t* q, const float* scale, bool per_row)
      : v_(v), d_(d), f32_(f32), q_(q), scale_(scale), per_row_(per_row) {}
  void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const override {
    if (in[0]->dtype != DType::I32 && in[0]->dtype != DType::I64) shape_error("embedding: ids must be int32 or int64");
    std::vector<int64_t> r = in[0]->shape;
    r.push_back(d_);
    out[0] = {DType::F32, r};
  }
  void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void*,
           const RunContext&) const override {
    const int64_t n = in[0]->numel();
    float* y = out[0]->as<float>();
    for (int64_t i = 0; i < n; ++i) {
      int64_t id = in[0]->info.dtype == DType::I64 ? in[0]->as<int64_t>()[i] : in[0]->as<int32_t>()[i];
      if (id < 0 || id >= v_)
        throw Error(Code::InvalidArgument, "embedding: id " + std::to_string(id) + " out of range [0, " +
                                               std::to_string(v_) + ")");
      if (f32_) {
        std::memcpy(y + i * d_, f32_ + id * d_, d_ * sizeof(float));
      } else {
        const int8_t* row = q_ + id * d_;
        const float s = scale_[per_row_ ? id : 0];
        for (int64_t j = 0; j < d_; ++j) y[i * d_ + j] = s * static_cast<float>(row[j]);
      }
    }
  }
  bool reads_at_run(size_t i) const override { return i == 0; }
  std::string kernel_name() const override { return f32_ ? "gather" : "gather_int8"; }
 private:
  int64_t v_, d_;
  const float* f32_;
  const int8_t* q_;
  const float* scale_;
  bool per_row_;
};
SLIMRT_REGISTER_OP("embedding", [](BuildContext& c) {
  const TensorDef& def = c.tensor_def(1);
  if (def.shape.size() != 2) c.fail(Code::Format, "table must be 2-D");
  if (def.format == TFormat::Int8 && (def.axis == 0 || def.axis == -1))  // read in place from the file
    return std::make_unique<EmbeddingOp>(def.shape[0], def.shape[1], nullptr, def.data.as<int8_t>(),
                                         def.scale.as<float>(), def.axis == 0);
  const Tensor& t = c.dense_constant(1);
  if (t.info.dtype != DType::F32) c.fail(Code::Format, "table must be a 2-D float tensor");
  return std::make_unique<EmbeddingOp>(t.shape()[0], t.shape()[1], t.as<float>(), nullptr, nullptr, false);
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

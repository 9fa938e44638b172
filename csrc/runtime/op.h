// The operator interface of the runtime. An Op is built once per loaded model
// (it validates its node against the constants and packs weights for the
// chosen ISA), then infers shapes and runs many times, from several threads
// at once: infer() and run() are const and keep no per-call state.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/cpu.h"
#include "format/model_def.h"

namespace slimrt {

struct TensorInfo {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
};

struct Tensor {
  TensorInfo info;
  void* data = nullptr;
  template <typename T> T* as() const { return static_cast<T*>(data); }
  const std::vector<int64_t>& shape() const { return info.shape; }
  int64_t numel() const { return info.numel(); }
};

struct RunContext {
  int threads = 1;
  Isa isa = Isa::Scalar;
  int variant = 0;  // which of the op's kernel variants the plan chose (see Op::num_variants)
};

class Program;

// What an op's factory sees: the node, the model, the ISA, and typed access to
// constant inputs (decoded to dense float32 on demand; compressed weights are
// available as their TensorDef so weight-consuming ops can pack them as they like).
struct BuildContext {
  const ModelDef& model;
  const NodeDef& node;
  Program& program;
  Isa isa;
  bool tune = false;  // build every kernel variant so the planner can time them
  bool is_constant(size_t input) const;
  const TensorDef& tensor_def(size_t input) const;          // requires is_constant
  const Tensor& dense_constant(size_t input) const;         // decoded f32 (or int as stored)
  std::string where() const;                                // "node 'name' (op)"
  [[noreturn]] void fail(Code c, const std::string& msg) const;
};

class Op {
 public:
  virtual ~Op() = default;
  // Output infos from input infos; throws Error(Code::InvalidArgument) on a mismatch.
  virtual void infer(const std::vector<const TensorInfo*>& in, std::vector<TensorInfo>& out) const = 0;
  // Scratch bytes run() needs for these inputs.
  virtual size_t workspace(const std::vector<const TensorInfo*>& in, int threads) const { return 0; }
  // True when output 0 is input 0's bytes reinterpreted (reshape, flatten): no run(), no copy.
  virtual bool is_view() const { return false; }
  virtual void run(const std::vector<const Tensor*>& in, const std::vector<Tensor*>& out, void* ws,
                   const RunContext& ctx) const = 0;
  // False for constant inputs the op took in when it was built (packed weights,
  // biases, norm parameters): the runtime then need not decode them.
  virtual bool reads_at_run(size_t input) const { return true; }
  // Alternative kernels for the same result (e.g. a compressed weight's native kernel, 0, and
  // its fp32 decoding, 1). The planner times them on the real shapes when tuning.
  virtual int num_variants() const { return 1; }
  virtual std::string variant_name(int v) const { return kernel_name(); }
  // The variant a plan runs for these input shapes when neither tuning nor a stored choice picks
  // one: 0 unless the op has a shape rule (a variant's speed may depend on more than its weights).
  virtual int default_variant(const std::vector<const TensorInfo*>& in) const { return 0; }
  // Called with the plan lock held before variant v first runs: an op may pack a variant's weights
  // only when a plan chooses it (planned) or the tuner times it (!planned). After the tuner picked a
  // node's variant, release_unplanned_variants() may free those packed only to be timed (never one
  // that a plan runs).
  virtual void prepare_variant(int v, bool planned) const {}
  virtual void release_unplanned_variants() const {}
  // Human-readable kernel choice, for inspect/profiling ("sgemm_avx512", ...).
  virtual std::string kernel_name() const { return ""; }
  // Runtime fusion (the file keeps both nodes): an op computing this node's outputs straight from
  // the inputs of `producer`, the node that writes this node's input 0, which nothing else reads;
  // null when the pair does not fuse. The fused op's inputs are the producer's, then this node's
  // inputs 1.. in order. The Program keeps `producer` and this op alive as long as the result.
  virtual std::unique_ptr<Op> fuse_producer(const Op& producer) const { return nullptr; }
};

using OpFactory = std::function<std::unique_ptr<Op>(BuildContext&)>;
void register_op(const std::string& name, OpFactory f);
const OpFactory* find_op(const std::string& name);

struct OpRegistrar {
  OpRegistrar(const char* name, OpFactory f) { register_op(name, std::move(f)); }
};
#define SLIMRT_CAT2(a, b) a##b
#define SLIMRT_CAT(a, b) SLIMRT_CAT2(a, b)
#define SLIMRT_REGISTER_OP(name, ...) \
  static ::slimrt::OpRegistrar SLIMRT_CAT(slimrt_op_reg_, __LINE__)(name, __VA_ARGS__)

// Shape helpers shared by ops.
[[noreturn]] void shape_error(const std::string& msg);
inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}
int64_t normalize_axis(int64_t axis, int64_t rank, const char* what);
// numpy broadcasting of two shapes; throws InvalidArgument when incompatible.
std::vector<int64_t> broadcast_shapes(const std::vector<int64_t>& a, const std::vector<int64_t>& b);

}  // namespace slimrt

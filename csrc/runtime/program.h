// A Program is a loaded model made ready to run on one ISA: one Op per node
// (weights packed), constants decoded where ops need them dense, and a cache
// of execution plans (shapes + memory layout) per input-shape signature.
// Program::execute may be called from several threads at once.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/op.h"

namespace slimrt {

// Execution plan for one set of input shapes.
struct Plan {
  std::vector<TensorInfo> infos;      // per value id
  std::vector<int32_t> root;          // per value: the value whose bytes it uses (itself unless a view)
  std::vector<int64_t> offset;        // per root value in the arena, -1 when not in the arena
  std::vector<int64_t> ws_offset;     // per node, -1 = no workspace
  std::vector<size_t> ws_bytes;       // per node
  std::vector<int32_t> output_slot;   // per value: index in outputs written in place, -1 otherwise
  std::vector<char> active;           // per node: needed for these outputs and not folded at load
  std::vector<int> variant;           // per node: the kernel variant to run (tuning)
  size_t arena_bytes = 0;
  std::vector<int32_t> outputs;       // value ids of the outputs this plan produces
  std::vector<TensorInfo> output_infos;
};

struct ProgramOptions {
  Isa isa = Isa::Scalar;
  int threads = 1;
  // Time each op's kernel variants on the real shapes when a plan is made and keep the
  // fastest: a compressed weight never runs slower than its fp32 decoding.
  bool tune = false;
  // Reuse kernel choices stored in the model's metadata for this CPU signature (tuning.h):
  // nodes with a stored choice run it without timing, even when `tune` is off.
  bool use_stored_tuning = true;
  // Run producer / consumer pairs that an op knows how to fuse (Op::fuse_producer) as one op.
  bool fuse = true;
};

class Program {
 public:
  Program(std::shared_ptr<const ModelDef> model, const ProgramOptions& opt);
  ~Program();

  const ModelDef& model() const { return *model_; }
  const std::shared_ptr<const ModelDef>& model_ptr() const { return model_; }
  Isa isa() const { return opt_.isa; }
  int threads() const { return opt_.threads; }

  // Validates input dtypes/shapes against the model and returns the plan (cached) computing
  // output set `output_set` (-1: every graph output; see add_output_set).
  std::shared_ptr<const Plan> plan(const std::vector<TensorInfo>& inputs, int output_set = -1) const;
  // Registers a subset of values to compute (e.g. one width of a slimmable model); returns its index.
  int add_output_set(const std::vector<int32_t>& value_ids);
  const std::vector<int32_t>& output_set(int i) const;
  // Runs the plan. inputs: one C-contiguous buffer per graph input; outputs:
  // one caller buffer per graph output, each of plan.output_infos[i].bytes().
  // node_ms (profiling): when given, sized to the node count and each node's wall time in
  // milliseconds is added to its entry (views and inactive nodes add nothing).
  void execute(const Plan& plan, const std::vector<const void*>& inputs,
               const std::vector<void*>& outputs, int threads = 0, std::vector<double>* node_ms = nullptr) const;

  // Constant access for ops being built (BuildContext).
  const Tensor& dense_constant(int32_t value_id);
  bool is_constant(int32_t value_id) const;        // stored in the file, or computed from constants at load
  const TensorDef& tensor_def(int32_t value_id) const;
  std::vector<std::string> kernel_names() const;
  bool op_is_view(size_t node) const;  // the node only re-labels its input's bytes (no kernel runs)
  // Kernel names as a plan runs them (tuned variants).
  std::vector<std::string> kernel_names(const Plan& p) const;
  // Kernel choices made or reused so far ("<node>|<shapes>" -> variant name), and the
  // CPU signature they belong to (tuning.h); `slimrt tune` stores them in the file.
  std::map<std::string, std::string> tuning_records() const;
  std::string tuning_signature() const;

 private:
  std::shared_ptr<Plan> make_plan(const std::vector<TensorInfo>& inputs, int output_set) const;
  void fold_constant_node(size_t n);
  void fuse_ops();
  int choose_variant(size_t n, const std::vector<const TensorInfo*>& in, const std::vector<TensorInfo>& out,
                     size_t ws_bytes) const;
  // Drops the pages of a constant's bytes in the mapped file from the resident set (MappedFile).
  void release_file_pages(const TensorDef& t) const;
  // ... for every constant input of node n (its op has packed what it needs).
  void release_node_constants(size_t n) const;
  // True when a stored choice for `node` names a variant its op (built without tuning) lacks.
  bool stored_choice_needs_variants(const std::string& node, const Op& op) const;
  int tune_node(size_t n, const std::vector<const TensorInfo*>& in, const std::vector<TensorInfo>& out,
                size_t ws_bytes) const;
  AlignedPtr<uint8_t> take_arena(size_t bytes, size_t* cap) const;
  void give_arena(AlignedPtr<uint8_t> a, size_t cap) const;

  std::shared_ptr<const ModelDef> model_;
  ProgramOptions opt_;
  std::vector<std::unique_ptr<Op>> ops_;          // null for nodes folded at load
  std::vector<std::vector<int32_t>> inputs_;      // per node: the values its op reads (the node's
                                                  // inputs, or a fused producer's inputs first)
  std::vector<std::unique_ptr<Op>> fused_away_;   // ops replaced by a fused op (which uses them)
  std::map<int32_t, Tensor> constants_;           // decoded constants and values folded at load, by value id
  std::map<int32_t, TensorDef> folded_defs_;      // TensorDef views of values folded at load
  std::vector<std::vector<int32_t>> output_sets_;
  std::vector<std::unique_ptr<uint8_t[], AlignedFree>> owned_;  // storage of decoded constants
  std::map<std::string, std::string> stored_;           // tuning records read from the file
  mutable std::map<std::string, std::string> records_;  // choices of the plans made (under mu_)
  mutable std::mutex mu_;
  mutable std::map<std::pair<int, std::vector<std::vector<int64_t>>>, std::shared_ptr<Plan>> plans_;
  mutable std::vector<std::pair<AlignedPtr<uint8_t>, size_t>> arenas_;  // free arenas
};

// Decodes any stored tensor (every TFormat) to float32, element by element — the
// scalar reference of the formats, used for small constants and by tests.
void decode_to_f32(const TensorDef& t, float* out);
// The nnz values of a CSR tensor, decoded to float32 (per-row channels resolved).
void decode_csr_values(const TensorDef& csr, float* out);

}  // namespace slimrt

#include "runtime/program.h"
#include "runtime/tuning.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "core/threadpool.h"
#include "format/mapped_file.h"

namespace slimrt {

// ---------------------------------------------------------------- registry
namespace {
std::unordered_map<std::string, OpFactory>& op_registry() {
  static std::unordered_map<std::string, OpFactory> r;
  return r;
}
}  // namespace

void register_op(const std::string& name, OpFactory f) { op_registry()[name] = std::move(f); }
const OpFactory* find_op(const std::string& name) {
  auto it = op_registry().find(name);
  return it == op_registry().end() ? nullptr : &it->second;
}

void shape_error(const std::string& msg) { throw Error(Code::InvalidArgument, msg); }

int64_t normalize_axis(int64_t axis, int64_t rank, const char* what) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    shape_error(std::string(what) + ": axis " + std::to_string(axis) + " out of range for rank " +
                std::to_string(rank));
  return a;
}

std::vector<int64_t> broadcast_shapes(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  size_t r = std::max(a.size(), b.size());
  std::vector<int64_t> out(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da != db && da != 1 && db != 1)
      shape_error("shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// ---------------------------------------------------------------- decoding
namespace {

float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal
      int e = -1;
      do { man <<= 1; ++e; } while (!(man & 0x400));
      bits = sign | ((127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float dense_elem(const TensorDef& t, int64_t i) {
  switch (t.dtype) {
    case DType::F32: return t.data.as<float>()[i];
    case DType::F16: return half_to_float(t.data.as<uint16_t>()[i]);
    case DType::I8: return t.data.as<int8_t>()[i];
    case DType::U8: return t.data.as<uint8_t>()[i];
    case DType::I16: return t.data.as<int16_t>()[i];
    case DType::U16: return t.data.as<uint16_t>()[i];
    case DType::I32: return static_cast<float>(t.data.as<int32_t>()[i]);
    case DType::I64: return static_cast<float>(t.data.as<int64_t>()[i]);
  }
  return 0.f;
}

// Element i of a non-CSR tensor whose channel is `ch`.
float elem(const TensorDef& t, int64_t i, int64_t ch) {
  switch (t.format) {
    case TFormat::Dense: return dense_elem(t, i);
    case TFormat::Int8: return t.data.as<int8_t>()[i] * t.scale.as<float>()[ch];
    case TFormat::Log2: {
      uint32_t c = packed_code(t.data.data, i, t.bits);
      if (c == 0) return 0.f;
      uint32_t mag = c & ((1u << (t.bits - 1)) - 1);
      float v = std::ldexp(t.scale.as<float>()[ch], -static_cast<int>(mag - 1));
      return (c >> (t.bits - 1)) ? -v : v;
    }
    case TFormat::Codebook: {
      uint32_t idx = packed_code(t.data.data, i, t.bits);
      int64_t k = ch * t.lut_size + idx;
      return t.lut_dtype == DType::I8 ? static_cast<float>(t.lut.as<int8_t>()[k]) : t.lut.as<float>()[k];
    }
    case TFormat::Csr: break;
  }
  return 0.f;
}

// The index of op's variant named `name`, or -1.
int variant_index(const Op& op, const std::string& name) {
  for (int v = 0; v < op.num_variants(); ++v)
    if (op.variant_name(v) == name) return v;
  return -1;
}

}  // namespace

void decode_csr_values(const TensorDef& t, float* out) {
  const TensorDef& v = *t.values;
  for (int64_t r = 0; r < t.shape[0]; ++r) {
    int64_t b = t.indptr_dtype == DType::I64 ? t.indptr.as<int64_t>()[r] : t.indptr.as<int32_t>()[r];
    int64_t e = t.indptr_dtype == DType::I64 ? t.indptr.as<int64_t>()[r + 1] : t.indptr.as<int32_t>()[r + 1];
    for (int64_t j = b; j < e; ++j) out[j] = elem(v, j, v.axis >= 0 ? r : 0);
  }
}

void decode_to_f32(const TensorDef& t, float* out) {
  if (t.format == TFormat::Csr) {
    int64_t rows = t.shape[0], cols = t.shape[1];
    std::fill(out, out + rows * cols, 0.f);
    const TensorDef& v = *t.values;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t b = t.indptr_dtype == DType::I64 ? t.indptr.as<int64_t>()[r] : t.indptr.as<int32_t>()[r];
      int64_t e = t.indptr_dtype == DType::I64 ? t.indptr.as<int64_t>()[r + 1] : t.indptr.as<int32_t>()[r + 1];
      for (int64_t j = b; j < e; ++j) {
        int64_t c = t.indices_dtype == DType::U16 ? t.indices.as<uint16_t>()[j] : t.indices.as<int32_t>()[j];
        out[r * cols + c] = elem(v, j, v.axis >= 0 ? r : 0);
      }
    }
    return;
  }
  int64_t inner = 1, channels = 1;
  if (t.axis >= 0) {
    channels = t.shape[t.axis];
    for (size_t d = t.axis + 1; d < t.shape.size(); ++d) inner *= t.shape[d];
  }
  for (int64_t i = 0; i < t.numel; ++i) out[i] = elem(t, i, t.axis >= 0 ? (i / inner) % channels : 0);
}

// ---------------------------------------------------------------- BuildContext
bool BuildContext::is_constant(size_t i) const {
  return i < node.inputs.size() && program.is_constant(node.inputs[i]);
}
const TensorDef& BuildContext::tensor_def(size_t i) const {
  if (!is_constant(i)) fail(Code::Format, "input " + std::to_string(i) + " must be a constant");
  return program.tensor_def(node.inputs[i]);
}
const Tensor& BuildContext::dense_constant(size_t i) const {
  if (!is_constant(i)) fail(Code::Format, "input " + std::to_string(i) + " must be a constant");
  return program.dense_constant(node.inputs[i]);
}
std::string BuildContext::where() const { return "node '" + node.name + "' (" + node.op + ")"; }
void BuildContext::fail(Code c, const std::string& msg) const { throw Error(c, where() + ": " + msg); }

// ---------------------------------------------------------------- Program
void Program::release_file_pages(const TensorDef& t) const {
  const MappedFile& f = *model_->file;
  for (const Bytes* b : {&t.data, &t.scale, &t.lut, &t.indptr, &t.indices}) f.release_range(b->data, b->size);
  if (t.values) release_file_pages(*t.values);
}

void Program::release_node_constants(size_t n) const {
  const ModelDef& m = *model_;
  if (!m.file) return;
  for (int32_t v : m.nodes[n].inputs)
    if (m.values[v].tensor >= 0) release_file_pages(m.tensors[m.values[v].tensor]);
}

Program::Program(std::shared_ptr<const ModelDef> model, const ProgramOptions& opt)
    : model_(std::move(model)), opt_(opt) {
  const ModelDef& m = *model_;
  if (opt_.use_stored_tuning) {
    auto t = m.metadata.find(tuning_metadata_key(tuning_signature()));
    if (t != m.metadata.end()) stored_ = parse_tuning(t->second);
  }
  ops_.resize(m.nodes.size());
  for (size_t n = 0; n < m.nodes.size(); ++n) {
    const NodeDef& node = m.nodes[n];
    const OpFactory* f = find_op(node.op);
    if (!f) throw Error(Code::Unsupported, "node '" + node.name + "': op '" + node.op + "' is not implemented");
    BuildContext ctx{m, node, *this, opt_.isa, opt_.tune};
    ops_[n] = (*f)(ctx);
    if (!opt_.tune && ops_[n] && stored_choice_needs_variants(node.name, *ops_[n])) {
      ctx.tune = true;  // a stored choice names another variant: build them
      ops_[n] = (*f)(ctx);
    }
    bool all_const = !node.inputs.empty();
    for (int32_t v : node.inputs) all_const = all_const && is_constant(v);
    if (all_const) {
      fold_constant_node(n);
      continue;
    }
    for (size_t i = 0; i < node.inputs.size(); ++i)
      if (is_constant(node.inputs[i]) && ops_[n]->reads_at_run(i)) dense_constant(node.inputs[i]);
    // The op packed (or decoded) its constants: their pages in the file need not stay resident while
    // the next ops pack theirs (what a run reads from the file faults back in).
    release_node_constants(n);
  }
  for (int32_t v : m.outputs)
    if (is_constant(v)) dense_constant(v);  // constant outputs are copied from here
  inputs_.resize(m.nodes.size());
  for (size_t n = 0; n < m.nodes.size(); ++n) inputs_[n] = m.nodes[n].inputs;
  if (opt_.fuse) fuse_ops();
  // Ops packed their weights into their own buffers: the file's pages need not stay resident (what a
  // run still reads from the file -- biases, zero-copy constants -- faults back in on first use).
  if (m.file) m.file->release_pages();
}

// Replaces the op of each node whose input 0 is the only output of a producer node that no other
// node and no graph output reads, when the op can fuse that producer (Op::fuse_producer), and
// repeats with the fused op and the producer of its new input 0. The
// producer's node stays (a plan that asks for its output still runs it); plans that do not need
// that value skip it, since the fused node reads the producer's inputs instead.
void Program::fuse_ops() {
  const ModelDef& m = *model_;
  std::vector<int> uses(m.values.size(), 0);
  std::vector<int32_t> producer(m.values.size(), -1);
  for (size_t n = 0; n < m.nodes.size(); ++n) {
    if (!ops_[n]) continue;
    for (int32_t v : m.nodes[n].inputs) ++uses[v];
    for (int32_t v : m.nodes[n].outputs) producer[v] = static_cast<int32_t>(n);
  }
  for (int32_t v : m.outputs) ++uses[v];
  for (size_t n = 0; n < m.nodes.size(); ++n) {
    // again while the fused op fuses the next producer up (depthwise -> pointwise, then the expansion)
    while (ops_[n] && !inputs_[n].empty()) {
      const int32_t v = inputs_[n][0], d = producer[v];
      if (d < 0 || !ops_[d] || uses[v] != 1 || m.nodes[d].outputs.size() != 1) break;
      std::unique_ptr<Op> f = ops_[n]->fuse_producer(*ops_[d]);
      if (!f) break;
      std::vector<int32_t> in = inputs_[d];
      in.insert(in.end(), inputs_[n].begin() + 1, inputs_[n].end());
      fused_away_.push_back(std::move(ops_[n]));
      ops_[n] = std::move(f);
      inputs_[n] = std::move(in);
    }
  }
}

// A node whose inputs are all constants runs once, here; its outputs become
// constants (e.g. the weight slices of each width of a slimmable model).
void Program::fold_constant_node(size_t n) {
  const NodeDef& node = model_->nodes[n];
  std::vector<TensorInfo> infos;
  std::vector<Tensor> tin;
  for (int32_t v : node.inputs) {
    const Tensor& t = dense_constant(v);
    infos.push_back(t.info);
    tin.push_back(t);
  }
  std::vector<const TensorInfo*> pin;
  for (auto& i : infos) pin.push_back(&i);
  std::vector<TensorInfo> out(node.outputs.size());
  try {
    ops_[n]->infer(pin, out);
  } catch (const Error& e) {
    throw Error(Code::Format, "node '" + node.name + "' (" + node.op + ") on constants: " + e.what());
  }
  std::vector<Tensor> tout(out.size());
  std::vector<const Tensor*> in;
  std::vector<Tensor*> outp;
  for (auto& t : tin) in.push_back(&t);
  for (size_t o = 0; o < out.size(); ++o) {
    tout[o].info = out[o];
    if (ops_[n]->is_view()) {
      tout[o].data = tin[0].data;
    } else {
      auto buf = aligned_array<uint8_t>(out[o].bytes());
      tout[o].data = buf.get();
      owned_.push_back(std::move(buf));
    }
    outp.push_back(&tout[o]);
  }
  if (!ops_[n]->is_view()) {
    size_t ws_bytes = ops_[n]->workspace(pin, opt_.threads);
    AlignedPtr<uint8_t> ws = ws_bytes ? aligned_array<uint8_t>(ws_bytes) : AlignedPtr<uint8_t>();
    RunContext ctx;
    ctx.threads = opt_.threads;
    ctx.isa = opt_.isa;
    ops_[n]->run(in, outp, ws.get(), ctx);
  }
  for (size_t o = 0; o < out.size(); ++o) {
    int32_t v = node.outputs[o];
    constants_[v] = tout[o];
    TensorDef d;
    d.name = model_->values[v].name;
    d.format = TFormat::Dense;
    d.dtype = out[o].dtype;
    d.shape = out[o].shape;
    d.numel = out[o].numel();
    d.data.data = static_cast<const uint8_t*>(tout[o].data);
    d.data.size = out[o].bytes();
    folded_defs_[v] = d;
  }
  ops_[n].reset();
}

bool Program::is_constant(int32_t v) const {
  return model_->values[v].tensor >= 0 || folded_defs_.count(v) != 0;
}

const TensorDef& Program::tensor_def(int32_t v) const {
  auto it = folded_defs_.find(v);
  if (it != folded_defs_.end()) return it->second;
  return model_->tensors[model_->values[v].tensor];
}

int Program::add_output_set(const std::vector<int32_t>& ids) {
  for (int32_t v : ids)
    if (v < 0 || v >= static_cast<int32_t>(model_->values.size()))
      throw Error(Code::InvalidArgument, "output value id out of range");
  std::lock_guard<std::mutex> lk(mu_);
  output_sets_.push_back(ids);
  return static_cast<int>(output_sets_.size()) - 1;
}

const std::vector<int32_t>& Program::output_set(int i) const {
  if (i < 0) return model_->outputs;
  std::lock_guard<std::mutex> lk(mu_);
  if (i >= static_cast<int>(output_sets_.size())) throw Error(Code::InvalidArgument, "no output set " + std::to_string(i));
  return output_sets_[i];
}

Program::~Program() = default;

const Tensor& Program::dense_constant(int32_t vid) {
  auto it = constants_.find(vid);
  if (it != constants_.end()) return it->second;
  const ModelDef& m = *model_;
  const TensorDef& t = m.tensors[m.values[vid].tensor];
  Tensor out;
  out.info.shape = t.shape;
  bool keep = t.format == TFormat::Dense &&
              (t.dtype == DType::F32 || t.dtype == DType::I32 || t.dtype == DType::I64);
  if (keep) {  // zero copy from the mapped file
    out.info.dtype = t.dtype;
    out.data = const_cast<uint8_t*>(t.data.data);
  } else {
    out.info.dtype = DType::F32;
    auto buf = aligned_array<uint8_t>(static_cast<size_t>(t.numel) * 4);
    decode_to_f32(t, reinterpret_cast<float*>(buf.get()));
    out.data = buf.get();
    owned_.push_back(std::move(buf));
  }
  return constants_.emplace(vid, out).first->second;
}

std::vector<std::string> Program::kernel_names(const Plan& p) const {
  std::vector<std::string> r;
  for (size_t n = 0; n < ops_.size(); ++n)
    r.push_back(ops_[n] ? ops_[n]->variant_name(p.variant[n]) : "folded at load");
  return r;
}

bool Program::stored_choice_needs_variants(const std::string& node, const Op& op) const {
  const std::string prefix = node + "|";
  for (auto it = stored_.lower_bound(prefix); it != stored_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
       ++it)
    if (variant_index(op, it->second) < 0) return true;
  return false;
}

std::string Program::tuning_signature() const {
  return cpu_signature(opt_.isa, opt_.threads > 0 ? opt_.threads : default_threads());
}

std::map<std::string, std::string> Program::tuning_records() const {
  std::lock_guard<std::mutex> lk(mu_);
  return records_;
}

// The variant node n runs for these shapes: a stored choice when the file has one for this
// CPU signature, else (with tune) the fastest measured now, else the first. mu_ is held.
int Program::choose_variant(size_t n, const std::vector<const TensorInfo*>& in, const std::vector<TensorInfo>& out,
                            size_t ws_bytes) const {
  std::vector<std::vector<int64_t>> shapes;
  for (const TensorInfo* t : in) shapes.push_back(t->shape);
  const std::string key = tuning_key(model_->nodes[n].name, shapes);
  const Op& op = *ops_[n];
  auto s = stored_.find(key);
  if (s != stored_.end())
    if (const int v = variant_index(op, s->second); v >= 0) {
      records_[key] = s->second;
      op.prepare_variant(v, true);
      return v;
    }
  if (!opt_.tune || op.num_variants() < 2) {
    const int v = op.default_variant(in);
    op.prepare_variant(v, true);
    return v;
  }
  const int v = tune_node(n, in, out, ws_bytes);
  records_[key] = op.variant_name(v);
  op.prepare_variant(v, true);
  op.release_unplanned_variants();
  return v;
}

// Runs each variant of node n on scratch data of the plan's shapes (constants as they are)
// and returns the fastest (best of kTuneRounds runs each, interleaved).
int Program::tune_node(size_t n, const std::vector<const TensorInfo*>& in, const std::vector<TensorInfo>& out,
                       size_t ws_bytes) const {
  std::vector<AlignedPtr<uint8_t>> bufs;
  std::vector<Tensor> tin(in.size()), tout(out.size());
  std::vector<const Tensor*> pin;
  std::vector<Tensor*> pout;
  for (size_t i = 0; i < in.size(); ++i) {
    tin[i].info = *in[i];
    auto c = constants_.find(inputs_[n][i]);
    if (c != constants_.end()) {
      tin[i].data = c->second.data;
    } else {
      bufs.push_back(aligned_array<uint8_t>(in[i]->bytes()));
      if (in[i]->dtype == DType::F32) {
        float* f = reinterpret_cast<float*>(bufs.back().get());
        for (int64_t j = 0; j < in[i]->numel(); ++j) f[j] = static_cast<float>((j * 7919) % 13) * 0.1f - 0.6f;
      } else {
        std::memset(bufs.back().get(), 0, in[i]->bytes());
      }
      tin[i].data = bufs.back().get();
    }
    pin.push_back(&tin[i]);
  }
  for (size_t o = 0; o < out.size(); ++o) {
    tout[o].info = out[o];
    bufs.push_back(aligned_array<uint8_t>(out[o].bytes()));
    tout[o].data = bufs.back().get();
    pout.push_back(&tout[o]);
  }
  AlignedPtr<uint8_t> ws = ws_bytes ? aligned_array<uint8_t>(ws_bytes) : AlignedPtr<uint8_t>();
  RunContext ctx;
  ctx.threads = opt_.threads;
  ctx.isa = opt_.isa;
  const int nv = ops_[n]->num_variants();
  for (int v = 0; v < nv; ++v) {  // pack, then one warm-up run each
    ctx.variant = v;
    ops_[n]->prepare_variant(v, false);
    ops_[n]->run(pin, pout, ws.get(), ctx);
  }
  // Best of kTuneRounds runs each, the variants taking turns (the first one rotating), so a burst of
  // load from other processes slows one run of each rather than every run of one variant: timed
  // one variant after the other, a shared machine's drift picked a slower kernel for some layers
  // in some processes (Xception fp32 batch 1, one thread: 10.5 ms in some sessions, 12.1-13.1 in others).
  constexpr int kTuneRounds = 4;
  std::vector<double> t(nv, 1e300);
  for (int r = 0; r < kTuneRounds; ++r)
    for (int i = 0; i < nv; ++i) {
      const int v = (r + i) % nv;
      ctx.variant = v;
      auto t0 = std::chrono::steady_clock::now();
      ops_[n]->run(pin, pout, ws.get(), ctx);
      t[v] = std::min(t[v], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  int best = 0;
  for (int v = 1; v < nv; ++v)
    if (t[v] < t[best] * 0.97) best = v;  // another variant must win clearly to replace the first
  return best;
}

std::vector<std::string> Program::kernel_names() const {
  std::vector<std::string> r;
  for (auto& op : ops_) r.push_back(op ? op->kernel_name() : "folded at load");
  return r;
}

std::shared_ptr<const Plan> Program::plan(const std::vector<TensorInfo>& inputs, int output_set) const {
  const ModelDef& m = *model_;
  if (inputs.size() != m.inputs.size())
    throw Error(Code::InvalidArgument, "model takes " + std::to_string(m.inputs.size()) + " inputs, got " +
                                           std::to_string(inputs.size()));
  std::vector<std::vector<int64_t>> key;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ValueDef& v = m.values[m.inputs[i]];
    bool ok_dtype = inputs[i].dtype == v.dtype;
    if (!ok_dtype)
      throw Error(Code::InvalidArgument, "input '" + v.name + "': dtype " + dtype_name(inputs[i].dtype) +
                                             ", expected " + dtype_name(v.dtype));
    bool ok = inputs[i].shape.size() == v.shape.size();
    for (size_t d = 0; ok && d < v.shape.size(); ++d)
      ok = inputs[i].shape[d] >= 0 && (v.shape[d] < 0 || v.shape[d] == inputs[i].shape[d]);
    if (!ok) {
      std::string want = "(";
      for (size_t d = 0; d < v.shape.size(); ++d)
        want += (d ? ", " : "") + (v.shape[d] < 0 ? std::string("?") : std::to_string(v.shape[d]));
      throw Error(Code::InvalidArgument, "input '" + v.name + "': shape " + shape_str(inputs[i].shape) +
                                             " does not match " + want + ")");
    }
    key.push_back(inputs[i].shape);
  }
  (void)this->output_set(output_set);  // range check
  std::lock_guard<std::mutex> lk(mu_);
  auto full_key = std::make_pair(output_set, key);
  auto it = plans_.find(full_key);
  if (it != plans_.end()) return it->second;
  auto p = make_plan(inputs, output_set);
  if (plans_.size() > 64) plans_.clear();  // bound the cache under ever-changing shapes
  plans_[full_key] = p;
  return p;
}

std::shared_ptr<Plan> Program::make_plan(const std::vector<TensorInfo>& inputs, int output_set) const {
  const ModelDef& m = *model_;
  const size_t nv = m.values.size(), nn = m.nodes.size();
  auto p = std::make_shared<Plan>();
  p->outputs = output_set < 0 ? m.outputs : output_sets_[output_set];  // mu_ is held by plan()
  // Nodes this output set needs (backwards from its outputs), minus those folded at load.
  p->active.assign(nn, 0);
  {
    std::vector<char> needed(nv, 0);
    for (int32_t v : p->outputs) needed[v] = 1;
    for (size_t n = nn; n-- > 0;) {
      if (!ops_[n]) continue;
      bool need = false;
      for (int32_t v : m.nodes[n].outputs) need = need || needed[v];
      if (!need) continue;
      p->active[n] = 1;
      for (int32_t v : inputs_[n]) needed[v] = 1;
    }
  }
  std::vector<int32_t> last_use(nv, -1);
  for (size_t n = 0; n < nn; ++n)
    if (p->active[n])
      for (int32_t v : inputs_[n]) last_use[v] = static_cast<int32_t>(n);
  for (int32_t v : p->outputs) last_use[v] = static_cast<int32_t>(nn);
  p->infos.resize(nv);
  p->root.resize(nv);
  p->offset.assign(nv, -1);
  p->ws_offset.assign(nn, -1);
  p->ws_bytes.assign(nn, 0);
  p->output_slot.assign(nv, -1);
  p->variant.assign(nn, 0);
  for (size_t v = 0; v < nv; ++v) p->root[v] = static_cast<int32_t>(v);
  std::vector<char> external(nv, 0);  // inputs and constants: not in the arena
  for (size_t i = 0; i < inputs.size(); ++i) {
    p->infos[m.inputs[i]] = inputs[i];
    external[m.inputs[i]] = 1;
  }
  for (auto& [v, t] : constants_) {
    p->infos[v] = t.info;
    external[v] = 1;
  }
  for (size_t v = 0; v < nv; ++v) {
    if (m.values[v].tensor >= 0 && !external[v]) {  // constants no op asked for decoded
      const TensorDef& t = m.tensors[m.values[v].tensor];
      bool keep = t.format == TFormat::Dense &&
                  (t.dtype == DType::F32 || t.dtype == DType::I32 || t.dtype == DType::I64);
      p->infos[v].dtype = keep ? t.dtype : DType::F32;
      p->infos[v].shape = t.shape;
      external[v] = 1;
    }
  }
  // Shapes, node by node.
  int threads = opt_.threads;
  for (size_t n = 0; n < nn; ++n) {
    if (!p->active[n]) continue;
    const NodeDef& node = m.nodes[n];
    std::vector<const TensorInfo*> in;
    for (int32_t v : inputs_[n]) in.push_back(&p->infos[v]);
    std::vector<TensorInfo> out(node.outputs.size());
    try {
      ops_[n]->infer(in, out);
      p->ws_bytes[n] = ops_[n]->workspace(in, threads);
      if (ops_[n]->num_variants() > 1 || !stored_.empty()) {
        p->variant[n] = choose_variant(n, in, out, p->ws_bytes[n]);
        release_node_constants(n);  // pages a variant packed now (or timed) read from the file
      }
    } catch (const Error& e) {
      throw Error(e.code(), "node '" + node.name + "' (" + node.op + "): " + e.what());
    }
    for (size_t o = 0; o < out.size(); ++o) {
      for (int64_t d : out[o].shape)
        if (d < 0) throw Error(Code::Internal, "node '" + node.name + "' inferred a negative dimension");
      p->infos[node.outputs[o]] = out[o];
    }
    if (ops_[n]->is_view()) {
      int32_t r = p->root[inputs_[n][0]];
      p->root[node.outputs[0]] = r;
    }
  }
  // Graph outputs that own their bytes are written straight into the caller's buffers.
  for (size_t i = 0; i < p->outputs.size(); ++i) {
    int32_t v = p->outputs[i];
    p->output_infos.push_back(p->infos[v]);
    if (p->root[v] == v && !external[v] && p->output_slot[v] < 0) p->output_slot[v] = static_cast<int32_t>(i);
  }
  // Lifetimes of arena blocks (roots), extended by their views' uses.
  struct Block { int64_t first, last; size_t bytes; int32_t value; int32_t node; };
  std::vector<int64_t> first(nv, -1), last(nv, -1);
  for (size_t n = 0; n < nn; ++n)
    if (p->active[n])
      for (int32_t v : m.nodes[n].outputs) first[v] = static_cast<int64_t>(n);
  for (size_t v = 0; v < nv; ++v) {
    if (first[v] < 0) continue;
    int32_t r = p->root[v];
    int64_t lu = last_use[v] < 0 ? first[v] : last_use[v];
    last[r] = std::max(last[r], lu);
  }
  std::vector<Block> blocks;
  for (size_t v = 0; v < nv; ++v) {
    if (p->root[v] != static_cast<int32_t>(v) || external[v] || p->output_slot[v] >= 0 || first[v] < 0) continue;
    blocks.push_back({first[v], std::max(last[v], first[v]), p->infos[v].bytes(), static_cast<int32_t>(v), -1});
  }
  for (size_t n = 0; n < nn; ++n)
    if (p->active[n] && p->ws_bytes[n]) blocks.push_back({(int64_t)n, (int64_t)n, p->ws_bytes[n], -1, static_cast<int32_t>(n)});
  // Greedy placement, largest first, lowest offset that overlaps no live block.
  std::sort(blocks.begin(), blocks.end(), [](const Block& a, const Block& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.first < b.first;
  });
  struct Placed { int64_t first, last; size_t off, end; };
  std::vector<Placed> placed;
  size_t arena = 0;
  for (const Block& b : blocks) {
    size_t sz = (b.bytes + kAlign - 1) / kAlign * kAlign;
    std::vector<std::pair<size_t, size_t>> busy;
    for (const Placed& q : placed)
      if (q.first <= b.last && b.first <= q.last) busy.emplace_back(q.off, q.end);
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (auto& [s, e] : busy) {
      if (off + sz <= s) break;
      off = std::max(off, e);
    }
    placed.push_back({b.first, b.last, off, off + sz});
    arena = std::max(arena, off + sz);
    if (b.value >= 0) p->offset[b.value] = static_cast<int64_t>(off);
    else p->ws_offset[b.node] = static_cast<int64_t>(off);
  }
  p->arena_bytes = arena;
  return p;
}

AlignedPtr<uint8_t> Program::take_arena(size_t bytes, size_t* cap) const {
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (size_t i = 0; i < arenas_.size(); ++i) {
      if (arenas_[i].second >= bytes) {
        auto a = std::move(arenas_[i].first);
        *cap = arenas_[i].second;
        arenas_.erase(arenas_.begin() + i);
        return a;
      }
    }
  }
  *cap = bytes;
  return aligned_array<uint8_t>(bytes);
}

void Program::give_arena(AlignedPtr<uint8_t> a, size_t cap) const {
  std::lock_guard<std::mutex> lk(mu_);
  if (arenas_.size() < 8) arenas_.emplace_back(std::move(a), cap);
}

bool Program::op_is_view(size_t node) const { return node < ops_.size() && ops_[node]->is_view(); }

void Program::execute(const Plan& p, const std::vector<const void*>& inputs,
                      const std::vector<void*>& outputs, int threads, std::vector<double>* node_ms) const {
  const ModelDef& m = *model_;
  if (inputs.size() != m.inputs.size() || outputs.size() != p.outputs.size())
    throw Error(Code::InvalidArgument, "wrong number of input or output buffers");
  size_t cap = 0;
  AlignedPtr<uint8_t> arena = take_arena(p.arena_bytes, &cap);
  const size_t nv = m.values.size();
  std::vector<void*> ptr(nv, nullptr);
  for (size_t i = 0; i < inputs.size(); ++i) ptr[m.inputs[i]] = const_cast<void*>(inputs[i]);
  for (auto& [vid, t] : constants_) ptr[vid] = t.data;
  for (size_t v = 0; v < nv; ++v) {
    if (p.output_slot[v] >= 0) ptr[v] = outputs[p.output_slot[v]];
    else if (p.offset[v] >= 0) ptr[v] = arena.get() + p.offset[v];
  }
  RunContext ctx;
  // Workspaces were sized for the session's thread count when the plan was made (per-thread
  // slots: im2col GEMM A blocks, attention heads): a run may use fewer threads, never more.
  const int planned = opt_.threads > 0 ? opt_.threads : default_threads();
  ctx.threads = threads > 0 ? std::min(threads, planned) : opt_.threads;
  ctx.isa = opt_.isa;
  std::vector<Tensor> tin, tout;
  std::vector<const Tensor*> in;
  std::vector<Tensor*> out;
  if (node_ms) node_ms->resize(m.nodes.size(), 0.0);
  try {
    for (size_t n = 0; n < m.nodes.size(); ++n) {
      if (!p.active[n]) continue;
      const NodeDef& node = m.nodes[n];
      if (ops_[n]->is_view()) {
        ptr[node.outputs[0]] = ptr[p.root[node.outputs[0]]];
        continue;
      }
      const std::vector<int32_t>& inputs_n = inputs_[n];
      tin.resize(inputs_n.size());
      tout.resize(node.outputs.size());
      in.clear();
      out.clear();
      for (size_t i = 0; i < inputs_n.size(); ++i) {
        int32_t v = inputs_n[i];
        tin[i].info = p.infos[v];
        tin[i].data = ptr[p.root[v]];
        in.push_back(&tin[i]);
      }
      for (size_t o = 0; o < node.outputs.size(); ++o) {
        int32_t v = node.outputs[o];
        tout[o].info = p.infos[v];
        tout[o].data = ptr[v];
        out.push_back(&tout[o]);
      }
      void* ws = p.ws_offset[n] >= 0 ? arena.get() + p.ws_offset[n] : nullptr;
      ctx.variant = p.variant[n];
      if (node_ms) {
        auto t0 = std::chrono::steady_clock::now();
        ops_[n]->run(in, out, ws, ctx);
        (*node_ms)[n] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      } else {
        ops_[n]->run(in, out, ws, ctx);
      }
    }
    for (size_t i = 0; i < p.outputs.size(); ++i) {
      int32_t v = p.outputs[i];
      if (p.output_slot[v] == static_cast<int32_t>(i)) continue;
      void* src = ptr[p.root[v]];
      if (!src) src = ptr[v];
      std::memcpy(outputs[i], src, p.output_infos[i].bytes());
    }
  } catch (...) {
    give_arena(std::move(arena), cap);
    throw;
  }
  give_arena(std::move(arena), cap);
}

}  // namespace slimrt

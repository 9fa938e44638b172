// Small helpers of model_def.h: dtype/format names and NodeDef's attribute
// accessors (schema defaults when an attribute is absent).
#include "format/model_def.h"

#include "core/common.h"
#include "format/schema.h"

namespace slimrt {

uint32_t packed_code(const uint8_t* p, int64_t i, int bits) {
  const uint64_t bit = static_cast<uint64_t>(i) * bits;
  uint32_t v = p[bit >> 3] >> (bit & 7);
  if ((bit & 7) + bits > 8) v |= static_cast<uint32_t>(p[(bit >> 3) + 1]) << (8 - (bit & 7));
  return v & ((1u << bits) - 1);
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::I8: return 1;
    case DType::U8: return 1;
    case DType::I16: return 2;
    case DType::U16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {  // numpy's names
  switch (t) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::I8: return "int8";
    case DType::U8: return "uint8";
    case DType::I16: return "int16";
    case DType::U16: return "uint16";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
  }
  return "?";
}

const char* tformat_name(TFormat f) {  // formats.FORMAT_NAMES
  switch (f) {
    case TFormat::Dense: return "dense";
    case TFormat::Int8: return "int8";
    case TFormat::Log2: return "log2";
    case TFormat::Codebook: return "codebook";
    case TFormat::Csr: return "csr";
  }
  return "?";
}

namespace {
// The attribute `k` of `n` (nullptr when absent) after checking the schema
// knows it with kind `kind`; `def` receives the schema's default.
const AttrValue* lookup(const NodeDef& n, const std::string& k, AttrValue::Kind kind, const AttrValue** def) {
  const OpSchema* s = find_op_schema(n.op);
  const AttrSpec* a = s ? s->find(k) : nullptr;
  if (!a) fail(Code::Internal, "op '" + n.op + "' has no attribute '" + k + "'");
  if (a->def.kind != kind)
    fail(Code::Internal, "attribute '" + k + "' of op '" + n.op + "' is " + attr_kind_name(a->def.kind) +
                             ", read as " + attr_kind_name(kind));
  *def = &a->def;
  auto it = n.attrs.find(k);
  return it == n.attrs.end() ? nullptr : &it->second;
}
}  // namespace

int64_t NodeDef::attr_int(const std::string& k) const {
  const AttrValue* def;
  const AttrValue* v = lookup(*this, k, AttrValue::Int, &def);
  return (v ? v : def)->i;
}

double NodeDef::attr_float(const std::string& k) const {
  const AttrValue* def;
  const AttrValue* v = lookup(*this, k, AttrValue::Float, &def);
  return (v ? v : def)->f;
}

const std::string& NodeDef::attr_str(const std::string& k) const {
  const AttrValue* def;
  const AttrValue* v = lookup(*this, k, AttrValue::Str, &def);
  return (v ? v : def)->s;
}

std::vector<int64_t> NodeDef::attr_ints(const std::string& k) const {
  const AttrValue* def;
  const AttrValue* v = lookup(*this, k, AttrValue::Ints, &def);
  return (v ? v : def)->ints;
}

}  // namespace slimrt

// The validated, in-memory view of a .slim file (docs/format.md).
// Produced only by the loader (loader.cpp), which checks every field before
// this struct is built: everything here can be trusted by the runtime —
// value ids in range, shapes non-negative with overflow-free products, every
// buffer inside the mapped file and exactly as large as its format says,
// CSR invariants, codebook indices < lut size, attributes legal for the op
// (schema.h). Tensor bytes point into the mapped file (zero copy).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace slimrt {

enum class DType : uint8_t { F32 = 1, F16 = 2, I8 = 3, U8 = 4, I16 = 5, U16 = 6, I32 = 7, I64 = 8 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

// Storage formats (python/slimrt/formats.py states the same equations).
enum class TFormat : uint8_t {
  Dense = 0,     // data[i], element type `dtype`
  Int8 = 1,      // w = scale[c] * q[i]                 (c along `axis`; axis -1: one scale)
  Log2 = 2,      // code 0 -> 0; else sign * scale[c] * 2^-(mag-1), codes packed at `bits`
  Codebook = 3,  // w = lut[c][idx[i]], indices packed LSB-first at `bits`
  Csr = 4,       // 2-D [rows, cols]; indptr, indices, values (a Dense/Int8/Log2/Codebook tensor of nnz)
};
const char* tformat_name(TFormat f);

// Code i of a stream packed LSB-first at `bits` (1..8) per code (docs/format.md "Packed codes").
// The caller guarantees the code lies inside the stream.
uint32_t packed_code(const uint8_t* p, int64_t i, int bits);

struct Bytes {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  template <typename T> const T* as() const { return reinterpret_cast<const T*>(data); }
};

struct TensorDef {
  std::string name;
  TFormat format = TFormat::Dense;
  DType dtype = DType::F32;          // Dense: element type. Int8: I8. Log2/Codebook: U8 (codes). Csr: dtype of values' decoded type (F32)
  std::vector<int64_t> shape;        // logical (decoded) shape
  int64_t numel = 0;                 // product of shape
  int32_t axis = -1;                 // Int8/Log2/Codebook per-channel axis, -1 = per tensor
  int32_t bits = 0;                  // Log2/Codebook code width (1..8)
  int64_t channels = 1;              // Int8/Log2: scale count; Codebook: lut_groups (1 when axis == -1;
                                     // shape[axis], or the CSR's rows for per-row CSR values)
  Bytes data;                        // Dense data | Int8 q | Log2 packed codes | Codebook packed indices
  Bytes scale;                       // Int8/Log2: f32 [channels]
  Bytes lut;                         // Codebook: [groups][lut_size] of lut_dtype (F32 or I8)
  DType lut_dtype = DType::F32;
  int64_t lut_groups = 0, lut_size = 0;
  // Csr only:
  Bytes indptr;                      // rows+1 of indptr_dtype (I32 or I64), non-decreasing, 0 .. nnz
  DType indptr_dtype = DType::I32;
  Bytes indices;                     // nnz of indices_dtype (U16 or I32), each < cols, absolute (a file's
  DType indices_dtype = DType::I32;  // relative indices are decoded by the loader into ModelDef::owned)
  int32_t index_bits = 0;            // how the file stored them: 0 absolute, 1..8 relative codes
  int64_t nnz = 0;
  std::shared_ptr<TensorDef> values; // 1-D [nnz], format Dense(F32/F16/I8)/Int8/Log2/Codebook; a per-channel
                                     // values tensor has axis 0 and one scale/lut row per CSR ROW (not per nnz)
};

struct AttrValue {
  enum Kind : uint8_t { Int = 1, Float = 2, Str = 3, Ints = 4, Floats = 5 } kind = Int;
  int64_t i = 0;
  double f = 0.0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
};

struct ValueDef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;        // graph inputs: -1 = dynamic dim; others: empty (inferred at run time)
  int32_t tensor = -1;               // index into ModelDef::tensors when the value is a constant
};

struct NodeDef {
  std::string op;
  std::string name;
  std::vector<int32_t> inputs;       // value ids
  std::vector<int32_t> outputs;      // value ids
  std::map<std::string, AttrValue> attrs;  // only attributes the schema knows, type-checked
  // Typed accessors with the schema's default (schema.h) when absent.
  int64_t attr_int(const std::string& k) const;
  double attr_float(const std::string& k) const;
  const std::string& attr_str(const std::string& k) const;
  std::vector<int64_t> attr_ints(const std::string& k) const;
};

class MappedFile;  // owns the mapping (or a heap copy)

struct ModelDef {
  uint32_t version_major = 0, version_minor = 0;
  std::vector<ValueDef> values;
  std::vector<TensorDef> tensors;
  std::vector<NodeDef> nodes;        // topologically ordered (checked: every input defined before use)
  std::vector<int32_t> inputs;       // value ids of graph inputs
  std::vector<int32_t> outputs;      // value ids of graph outputs
  std::map<std::string, std::string> metadata;
  std::shared_ptr<MappedFile> file;  // keeps tensor bytes alive
  std::vector<std::unique_ptr<uint8_t[]>> owned;  // bytes the loader decoded (relative CSR indices)
};

// Load and fully validate. Throw slimrt::Error(Code::Format, "<what is wrong>") on any bad file, Code::Io when the
// file cannot be opened/mapped. Never allocate more than the file could justify.
std::shared_ptr<const ModelDef> load_model_file(const std::string& path);
std::shared_ptr<const ModelDef> load_model_memory(const void* data, size_t size);  // copies the bytes

}  // namespace slimrt

// The validating .slim loader: the trust boundary between a file and the
// runtime. Nothing from the file is used before it is checked; every error is
// Error(Code::Format) naming the section, tensor, node or value at fault.
//
// Order of checks (docs/format.md, "Validation"):
//   1. header: size, magic, major version, section count, header CRC (covers
//      the section table too), file size, zero flags/reserved bytes;
//   2. sections: known kinds once each, 64-aligned, inside the file,
//      non-overlapping, graph/tensor-table CRCs; every byte of the file that
//      no region covers must be zero;
//   3. tensor table: per tensor its fields, overflow-checked shape, exact
//      buffer sizes for its format, buffers 64-aligned inside the data
//      section, non-overlapping, per-buffer CRC, zero padding between them;
//   4. tensor contents: CSR invariants, codebook indices < lut size, log2
//      codes well formed, zero tail bits of packed codes;
//   5. graph: values, inputs, outputs, nodes (schema, attributes, topological
//      order, single definition), metadata.
// Counts are checked against the bytes left before anything is allocated.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "core/common.h"
#include "core/threadpool.h"
#include "format/crc32.h"
#include "format/mapped_file.h"
#include "format/model_def.h"
#include "format/schema.h"
#include "format/slim_format.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .slim loader reads little-endian fields in place");

namespace slimrt {
namespace {

using namespace slim;

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// True when s is valid UTF-8 without NUL (names travel to Python and C).
bool valid_text(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c == 0) return false;
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

// Bounds-checked little-endian reader over one section.
class Cursor {
 public:
  Cursor(const uint8_t* p, uint64_t n, std::string section) : p_(p), n_(n), section_(std::move(section)) {}

  uint64_t left() const { return n_ - pos_; }
  uint64_t pos() const { return pos_; }
  const std::string& section() const { return section_; }

  template <typename T>
  T get(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string str(const std::string& field, uint64_t max_len) {
    uint32_t len = get<uint32_t>(field + " length");
    if (len > max_len)
      format_error(section_ + ": " + field + " is " + std::to_string(len) + " bytes long, at most " +
                   std::to_string(max_len) + " allowed");
    need(len, field);
    const uint8_t* s = p_ + pos_;
    if (!valid_text(s, len)) format_error(section_ + ": " + field + " is not valid UTF-8 text (or holds NUL)");
    pos_ += len;
    return std::string(reinterpret_cast<const char*>(s), len);
  }

  // A u32 count of items that each take at least `min_item` bytes: checked
  // against the bytes left before the caller allocates anything.
  uint32_t count(const std::string& field, uint64_t min_item) {
    uint32_t n = get<uint32_t>(field);
    if (static_cast<uint64_t>(n) * min_item > left())
      format_error(section_ + ": " + field + " " + std::to_string(n) + " exceeds what the " +
                   std::to_string(left()) + " remaining bytes can hold");
    return n;
  }

  void need(uint64_t k, const std::string& field) const {
    if (k > left())
      format_error(section_ + ": truncated reading " + field + " (need " + std::to_string(k) + " bytes at offset " +
                   std::to_string(pos_) + ", " + std::to_string(left()) + " left)");
  }

  void expect_end() const {
    if (left()) format_error(section_ + ": " + std::to_string(left()) + " unexpected trailing bytes");
  }

 private:
  const uint8_t* p_;
  uint64_t n_;
  uint64_t pos_ = 0;
  std::string section_;
};

template <typename T>
T rd(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

bool valid_dtype(uint8_t d) { return d >= 1 && d <= 8; }

// First non-zero byte in [from, to), or `to`.
uint64_t first_nonzero(const uint8_t* b, uint64_t from, uint64_t to) {
  uint64_t i = from;
  for (; i < to && (i & 7); ++i)
    if (b[i]) return i;
  for (; i + 8 <= to; i += 8)
    if (rd<uint64_t>(b + i)) break;
  for (; i < to; ++i)
    if (b[i]) return i;
  return to;
}

void check_zero(const uint8_t* b, uint64_t from, uint64_t to, const std::string& where) {
  uint64_t z = first_nonzero(b, from, to);
  if (z != to)
    format_error("non-zero padding byte at file offset " + std::to_string(z) + " (" + where +
                 "): padding must be zero");
}

struct Region {
  uint64_t off, size;
  std::string what;
};

struct BufRef {
  uint64_t off, size;
  uint32_t crc;
  std::string what;  // "tensor 'w' buffer 'scale'"
  const uint8_t* data;
};

// Calls f(i, code) for each of `count` codes packed LSB-first at `bits`
// (1..8); returns the bits left in the last byte after the final code.
template <typename F>
uint32_t for_each_code(const uint8_t* p, int64_t count, int bits, F&& f) {
  if (bits == 8) {
    for (int64_t i = 0; i < count; ++i) f(i, static_cast<uint32_t>(p[i]));
    return 0;
  }
  uint64_t acc = 0;
  int have = 0;
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t i = 0; i < count; ++i) {
    if (have < bits) {
      acc |= static_cast<uint64_t>(*p++) << have;
      have += 8;
    }
    f(i, static_cast<uint32_t>(acc & mask));
    acc >>= bits;
    have -= bits;
  }
  return static_cast<uint32_t>(acc);
}

class Loader {
 public:
  explicit Loader(std::shared_ptr<MappedFile> file) : file_(std::move(file)), b_(file_->data()), n_(file_->size()) {}

  std::shared_ptr<const ModelDef> run() {
    auto m = std::make_shared<ModelDef>();
    m_ = m.get();
    m->file = file_;
    read_header();
    read_sections();
    read_tensor_table();
    verify_buffers();
    for (TensorDef& t : m_->tensors) check_contents(t);
    read_graph();
    return m;
  }

 private:
  // ---- 1. header ---------------------------------------------------------
  void read_header() {
    if (n_ < kHeaderSize)
      format_error("file too small for a .slim header: " + std::to_string(n_) + " bytes, need at least " +
                   std::to_string(kHeaderSize));
    if (std::memcmp(b_, kMagic, sizeof kMagic) != 0) format_error("bad magic: not a .slim file");
    uint16_t major = rd<uint16_t>(b_ + 8), minor = rd<uint16_t>(b_ + 10);
    if (major > kVersionMajor)
      format_error("file format version " + std::to_string(major) + "." + std::to_string(minor) +
                   " is newer than this reader (" + std::to_string(kVersionMajor) + "." +
                   std::to_string(kVersionMinor) + "): upgrade slimrt");
    if (major < kVersionMajor)
      format_error("file format version " + std::to_string(major) + "." + std::to_string(minor) +
                   " is not supported (this reader reads " + std::to_string(kVersionMajor) + ".x)");
    m_->version_major = major;
    m_->version_minor = minor;
    uint32_t hsize = rd<uint32_t>(b_ + 12);
    if (hsize != kHeaderSize)
      format_error("header: header size " + std::to_string(hsize) + ", expected " + std::to_string(kHeaderSize));
    nsec_ = rd<uint32_t>(b_ + 24);
    if (nsec_ < 3 || nsec_ > kMaxSections)
      format_error("header: section count " + std::to_string(nsec_) + " outside 3.." + std::to_string(kMaxSections));
    table_end_ = kHeaderSize + uint64_t{nsec_} * kSectionEntrySize;
    uint64_t file_size = rd<uint64_t>(b_ + 16);
    if (table_end_ > n_)
      format_error("file is truncated: " + std::to_string(n_) + " bytes cannot hold the header and section table" +
                   (file_size != n_ ? " (header says " + std::to_string(file_size) + " bytes)" : std::string()));
    uint32_t stored = rd<uint32_t>(b_ + kHeaderCrcOffset);
    uint32_t crc = crc32(b_, kHeaderCrcOffset);
    crc = crc32(b_ + kHeaderSize, table_end_ - kHeaderSize, crc);
    if (crc != stored)
      format_error("header: CRC mismatch over the header and section table (stored " + hex32(stored) +
                   ", computed " + hex32(crc) + "): the file is corrupt");
    if (file_size != n_)
      format_error(file_size > n_ ? "file is truncated: header says " + std::to_string(file_size) +
                                        " bytes, the file has " + std::to_string(n_)
                                  : "file has " + std::to_string(n_ - file_size) +
                                        " trailing bytes after the " + std::to_string(file_size) +
                                        " the header declares");
    if (rd<uint32_t>(b_ + 28) != 0) format_error("header: flags must be 0");
    if (first_nonzero(b_, 32, kHeaderCrcOffset) != kHeaderCrcOffset) format_error("header: reserved bytes must be 0");
  }

  // ---- 2. sections -------------------------------------------------------
  void read_sections() {
    struct Entry {
      uint32_t kind, crc;
      uint64_t off, size;
      std::string name;
    };
    std::vector<Entry> entries;
    std::vector<Region> regions{{0, table_end_, "header and section table"}};
    for (uint32_t i = 0; i < nsec_; ++i) {
      const uint8_t* e = b_ + kHeaderSize + uint64_t{i} * kSectionEntrySize;
      uint32_t kind = rd<uint32_t>(e), crc = rd<uint32_t>(e + 4);
      uint64_t off = rd<uint64_t>(e + 8), size = rd<uint64_t>(e + 16);
      std::string name = kind == kGraph     ? "graph section"
                         : kind == kTensors ? "tensor table section"
                         : kind == kData    ? "data section"
                                            : "section " + std::to_string(i) + " (kind " + std::to_string(kind) + ")";
      if (rd<uint64_t>(e + 24) != 0) format_error(name + ": reserved field must be 0");
      uint64_t end;
      if (add_overflow_u64(off, size, &end) || end > n_)
        format_error(name + ": offset " + std::to_string(off) + " + size " + std::to_string(size) +
                     " lies past the end of the file (" + std::to_string(n_) + " bytes)");
      if (off % kFileAlign) format_error(name + ": offset " + std::to_string(off) + " is not a multiple of 64");
      if (kind == kGraph || kind == kTensors || kind == kData) {
        Section& s = kind == kGraph ? graph_ : kind == kTensors ? table_ : data_;
        if (s.present) format_error(name + " appears twice");
        s = {true, off, size};
        if (kind == kData && crc != 0)
          format_error("data section: crc field must be 0 (each buffer carries its own CRC)");
      } else if (m_->version_minor <= kVersionMinor) {
        // Only a newer minor version may add section kinds; this reader skips them (CRC-checked).
        format_error(name + ": unknown section kind");
      }
      entries.push_back({kind, crc, off, size, name});
      regions.push_back({off, size, name});
    }
    if (!graph_.present) format_error("no graph section");
    if (!table_.present) format_error("no tensor table section");
    if (!data_.present) format_error("no data section");
    check_layout(regions, 0, n_, "file");
    for (const Entry& e : entries) {
      if (e.kind == kData) continue;
      uint32_t got = crc32(b_ + e.off, e.size);
      if (got != e.crc)
        format_error(e.name + ": CRC mismatch (stored " + hex32(e.crc) + ", computed " + hex32(got) +
                     "): the file is corrupt");
    }
  }

  // Sorted, non-overlapping regions inside [lo, hi); zero bytes between them.
  void check_layout(std::vector<Region>& regions, uint64_t lo, uint64_t hi, const std::string& within) {
    std::sort(regions.begin(), regions.end(), [](const Region& a, const Region& b) {
      return a.off != b.off ? a.off < b.off : a.size < b.size;
    });
    uint64_t pos = lo;
    std::string prev = within + " start";
    for (const Region& r : regions) {
      if (r.size == 0) continue;
      if (r.off < pos) format_error(r.what + " overlaps " + prev);
      check_zero(b_, pos, r.off, "between " + prev + " and " + r.what);
      pos = r.off + r.size;
      prev = r.what;
    }
    check_zero(b_, pos, hi, "after " + prev + ", before the end of the " + within);
  }

  // ---- 3. tensor table ---------------------------------------------------
  void read_tensor_table() {
    Cursor c(b_ + table_.off, table_.size, "tensor table");
    constexpr uint64_t kMinTensor = 4 + 8 + 4 + 24 + kBufferEntrySize;
    uint32_t n = c.count("tensor count", kMinTensor);
    m_->tensors.resize(n);
    std::unordered_map<std::string, uint32_t> names;
    names.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
      TensorDef& t = m_->tensors[i];
      read_tensor(c, t, i, nullptr);
      if (!names.emplace(t.name, i).second) format_error("tensor table: tensor name '" + t.name + "' appears twice");
    }
    c.expect_end();
  }

  void read_tensor(Cursor& c, TensorDef& t, uint32_t index, const TensorDef* csr) {
    std::string label = csr ? "tensor '" + csr->name + "' values" : "tensor " + std::to_string(index);
    std::string name = c.str(label + " name", kMaxName);
    if (csr) {
      if (!name.empty()) format_error(label + ": the values of a CSR tensor must have an empty name");
      t.name = csr->name + "/values";
    } else {
      if (name.empty()) format_error(label + ": empty name");
      t.name = name;
    }
    const std::string where = csr ? label : "tensor '" + t.name + "'";
    uint8_t format = c.get<uint8_t>(where + " format");
    uint8_t dtype = c.get<uint8_t>(where + " dtype");
    uint8_t rank = c.get<uint8_t>(where + " rank");
    uint8_t bits = c.get<uint8_t>(where + " bits");
    int32_t axis = c.get<int32_t>(where + " axis");
    uint8_t lut_dtype = c.get<uint8_t>(where + " lut dtype");
    uint8_t indptr_dtype = c.get<uint8_t>(where + " indptr dtype");
    uint8_t indices_dtype = c.get<uint8_t>(where + " indices dtype");
    uint8_t nbuf = c.get<uint8_t>(where + " buffer count");
    int64_t lut_groups = c.get<int64_t>(where + " lut groups");
    int64_t lut_size = c.get<int64_t>(where + " lut size");
    int64_t nnz = c.get<int64_t>(where + " nnz");
    if (format > 4) format_error(where + ": unknown storage format " + std::to_string(format));
    t.format = static_cast<TFormat>(format);
    if (csr && t.format == TFormat::Csr) format_error(where + ": CSR values cannot themselves be CSR");
    const std::string fname = tformat_name(t.format);
    if (!valid_dtype(dtype)) format_error(where + ": unknown dtype code " + std::to_string(dtype));
    t.dtype = static_cast<DType>(dtype);
    if (rank > kMaxRank) format_error(where + ": rank " + std::to_string(rank) + " exceeds " + std::to_string(kMaxRank));
    t.shape.resize(rank);
    for (uint32_t d = 0; d < rank; ++d) {
      t.shape[d] = c.get<int64_t>(where + " dim " + std::to_string(d));
      if (t.shape[d] < 0) format_error(where + ": negative dimension in shape " + shape_text(t.shape));
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape)
      if (mul_overflow_u64(numel, static_cast<uint64_t>(d), &numel) || numel > (uint64_t{1} << 62))
        format_error(where + ": shape " + shape_text(t.shape) + " element count overflows");
    t.numel = static_cast<int64_t>(numel);
    t.axis = axis;
    t.bits = bits;

    // Fields each format uses; the others must be zero.
    auto zero = [&](bool ok, const char* field) {
      if (!ok) format_error(where + ": " + field + " must be 0 for a " + fname + " tensor");
    };
    const bool quant = t.format == TFormat::Int8 || t.format == TFormat::Log2 || t.format == TFormat::Codebook;
    if (!quant && axis != -1) format_error(where + ": axis must be -1 for a " + fname + " tensor");
    if (t.format != TFormat::Codebook) {
      zero(lut_dtype == 0, "lut dtype");
      zero(lut_groups == 0, "lut groups");
      zero(lut_size == 0, "lut size");
    }
    if (t.format != TFormat::Csr) {
      zero(indptr_dtype == 0, "indptr dtype");
      zero(indices_dtype == 0, "indices dtype");
      zero(nnz == 0, "nnz");
    }
    if (t.format == TFormat::Dense || t.format == TFormat::Int8) zero(bits == 0, "bits");
    if (nbuf != (t.format == TFormat::Dense ? 1 : 2))
      format_error(where + ": " + std::to_string(nbuf) + " buffers, a " + fname + " tensor has " +
                   (t.format == TFormat::Dense ? "1" : "2"));

    // Channels of per-channel formats.
    if (quant) {
      if (axis < -1 || axis >= static_cast<int32_t>(rank))
        format_error(where + ": axis " + std::to_string(axis) + " out of range for shape " + shape_text(t.shape));
      if (axis < 0) t.channels = 1;
      else if (csr) {
        if (axis != 0) format_error(where + ": per-row CSR values must have axis 0");
        t.channels = csr->shape[0];
      } else {
        t.channels = t.shape[axis];
      }
    }

    uint64_t need[2] = {0, 0};
    uint64_t need_max1 = 0;  // relative CSR indices: buffer 1 may hold need[1] .. need_max1 bytes
    const char* bufname[2] = {"data", ""};
    auto bytes_of = [&](uint64_t count, uint64_t elem, const char* what) {
      uint64_t r;
      if (mul_overflow_u64(count, elem, &r)) format_error(where + ": " + what + " byte count overflows");
      return r;
    };
    auto packed = [&](uint64_t count, uint32_t b) { return (bytes_of(count, b, "packed code") + 7) / 8; };
    switch (t.format) {
      case TFormat::Dense:
        if (csr && t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::I8)
          format_error(where + ": dense CSR values must be float32, float16 or int8, not " + dtype_name(t.dtype));
        need[0] = bytes_of(numel, dtype_size(t.dtype), "data");
        break;
      case TFormat::Int8:
        if (t.dtype != DType::I8) format_error(where + ": int8 tensor with dtype " + dtype_name(t.dtype));
        need[0] = numel;
        need[1] = bytes_of(t.channels, 4, "scale");
        bufname[0] = "q";
        bufname[1] = "scale";
        break;
      case TFormat::Log2:
        if (t.dtype != DType::U8) format_error(where + ": log2 tensor with dtype " + dtype_name(t.dtype));
        if (bits < 2 || bits > 8) format_error(where + ": log2 code width " + std::to_string(bits) + " outside 2..8");
        need[0] = packed(numel, bits);
        need[1] = bytes_of(t.channels, 4, "scale");
        bufname[0] = "codes";
        bufname[1] = "scale";
        break;
      case TFormat::Codebook:
        if (t.dtype != DType::U8) format_error(where + ": codebook tensor with dtype " + dtype_name(t.dtype));
        if (bits < 1 || bits > 8)
          format_error(where + ": codebook index width " + std::to_string(bits) + " outside 1..8");
        if (lut_dtype != static_cast<uint8_t>(DType::F32) && lut_dtype != static_cast<uint8_t>(DType::I8))
          format_error(where + ": lut dtype code " + std::to_string(lut_dtype) + " is not float32 or int8");
        t.lut_dtype = static_cast<DType>(lut_dtype);
        if (lut_size < 1 || lut_size > (int64_t{1} << bits))
          format_error(where + ": lut size " + std::to_string(lut_size) + " outside 1..2^" + std::to_string(bits) +
                       " (" + std::to_string(1 << bits) + ")");
        if (lut_groups != t.channels)
          format_error(where + ": lut groups " + std::to_string(lut_groups) + ", expected " +
                       std::to_string(t.channels) + " (one per channel)");
        t.lut_groups = lut_groups;
        t.lut_size = lut_size;
        need[0] = packed(numel, bits);
        need[1] = bytes_of(bytes_of(lut_groups, lut_size, "lut"), dtype_size(t.lut_dtype), "lut");
        bufname[0] = "indices";
        bufname[1] = "lut";
        break;
      case TFormat::Csr:
        if (t.dtype != DType::F32) format_error(where + ": csr tensor with dtype " + dtype_name(t.dtype));
        if (rank != 2) format_error(where + ": CSR tensors are 2-D, got shape " + shape_text(t.shape));
        if (indptr_dtype != static_cast<uint8_t>(DType::I32) && indptr_dtype != static_cast<uint8_t>(DType::I64))
          format_error(where + ": CSR indptr dtype code " + std::to_string(indptr_dtype) + " is not int32 or int64");
        if (bits > 8) format_error(where + ": relative CSR index width " + std::to_string(bits) + " is outside 1..8");
        if (bits == 0 && indices_dtype != static_cast<uint8_t>(DType::U16) &&
            indices_dtype != static_cast<uint8_t>(DType::I32))
          format_error(where + ": CSR indices dtype code " + std::to_string(indices_dtype) +
                       " is not uint16 or int32");
        if (bits != 0 && indices_dtype != static_cast<uint8_t>(DType::U8))
          format_error(where + ": relative CSR indices must have dtype code 4 (uint8), got " +
                       std::to_string(indices_dtype));
        if (nnz < 0 || static_cast<uint64_t>(nnz) > numel)
          format_error(where + ": nnz " + std::to_string(nnz) + " outside 0.." + std::to_string(numel));
        t.indptr_dtype = static_cast<DType>(indptr_dtype);
        t.indices_dtype = static_cast<DType>(indices_dtype);
        t.nnz = nnz;
        t.bits = 0;
        t.index_bits = bits;
        need[0] = bytes_of(static_cast<uint64_t>(t.shape[0]) + 1, dtype_size(t.indptr_dtype), "indptr");
        if (bits == 0) {
          need[1] = bytes_of(nnz, dtype_size(t.indices_dtype), "indices");
        } else {
          // nnz codes plus at most ceil(cols / E) escapes per row (E = 2^bits - 1)
          const uint64_t e = (uint64_t{1} << bits) - 1;
          const uint64_t esc = bytes_of(static_cast<uint64_t>(t.shape[0]), (static_cast<uint64_t>(t.shape[1]) + e - 1) / e,
                                        "relative index escapes");
          uint64_t codes;
          if (add_overflow_u64(esc, static_cast<uint64_t>(nnz), &codes))
            format_error(where + ": relative index code count overflows");
          need[1] = packed(static_cast<uint64_t>(nnz), bits);
          need_max1 = packed(codes, bits);
        }
        bufname[0] = "indptr";
        bufname[1] = "indices";
        break;
    }
    if (csr && (rank != 1 || t.shape[0] != csr->nnz))
      format_error(where + ": shape " + shape_text(t.shape) + ", expected (" + std::to_string(csr->nnz) + ",) (nnz)");

    Bytes* slot[2] = {&t.data, &t.scale};
    if (t.format == TFormat::Codebook) slot[1] = &t.lut;
    if (t.format == TFormat::Csr) slot[0] = &t.indptr, slot[1] = &t.indices;
    for (uint32_t k = 0; k < nbuf; ++k) {
      std::string bw = where + " buffer '" + bufname[k] + "'";
      uint64_t off = c.get<uint64_t>(bw + " offset"), size = c.get<uint64_t>(bw + " size");
      uint32_t crc = c.get<uint32_t>(bw + " crc");
      if (c.get<uint32_t>(bw + " reserved") != 0) format_error(bw + ": reserved field must be 0");
      if (k == 1 && need_max1) {
        if (size < need[1] || size > need_max1)
          format_error(bw + ": " + std::to_string(size) + " bytes, relative indices of " + std::to_string(t.nnz) +
                       " entries need " + std::to_string(need[1]) + ".." + std::to_string(need_max1));
      } else if (size != need[k]) {
        format_error(bw + ": " + std::to_string(size) + " bytes, the " + fname + " format needs " +
                     std::to_string(need[k]));
      }
      uint64_t end;
      if (add_overflow_u64(off, size, &end) || off < data_.off || end > data_.off + data_.size)
        format_error(bw + ": offset " + std::to_string(off) + " + size " + std::to_string(size) +
                     " lies outside the data section [" + std::to_string(data_.off) + ", " +
                     std::to_string(data_.off + data_.size) + ")");
      if (off % kFileAlign) format_error(bw + ": offset " + std::to_string(off) + " is not a multiple of 64");
      slot[k]->data = b_ + off;
      slot[k]->size = size;
      bufs_.push_back({off, size, crc, bw, b_ + off});
    }
    if (t.format == TFormat::Csr) {
      t.values = std::make_shared<TensorDef>();
      read_tensor(c, *t.values, index, &t);
    }
  }

  void verify_buffers() {
    std::vector<Region> regions;
    regions.reserve(bufs_.size());
    for (const BufRef& r : bufs_) regions.push_back({r.off, r.size, r.what});
    check_layout(regions, data_.off, data_.off + data_.size, "data section");
    // CRCs of all buffers: one task per buffer, largest first, on the shared pool when there
    // is enough data to pay for it; errors are reported in table order (deterministic).
    std::vector<uint32_t> got(bufs_.size());
    std::vector<size_t> order(bufs_.size());
    uint64_t total = 0;
    for (size_t i = 0; i < bufs_.size(); ++i) order[i] = i, total += bufs_[i].size;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return bufs_[a].size > bufs_[b].size; });
    auto task = [&](int64_t k) {
      const BufRef& r = bufs_[order[k]];
      got[order[k]] = crc32(r.data, r.size);
    };
    if (total >= (uint64_t{4} << 20) && bufs_.size() > 1)
      ThreadPool::global().run(static_cast<int64_t>(bufs_.size()), default_threads(), task);
    else
      for (size_t k = 0; k < bufs_.size(); ++k) task(static_cast<int64_t>(k));
    for (size_t i = 0; i < bufs_.size(); ++i) {
      const BufRef& r = bufs_[i];
      if (got[i] != r.crc)
        format_error(r.what + ": CRC mismatch (stored " + hex32(r.crc) + ", computed " + hex32(got[i]) +
                     "): the tensor data is corrupt");
    }
  }

  // ---- 4. tensor contents ------------------------------------------------
  void check_contents(TensorDef& t) {
    const std::string where = "tensor '" + t.name + "'";
    if (t.format == TFormat::Log2) {
      const uint32_t sign = 1u << (t.bits - 1);
      uint32_t tail = for_each_code(t.data.data, t.numel, t.bits, [&](int64_t i, uint32_t code) {
        if (code == sign)
          format_error(where + ": log2 code " + std::to_string(code) + " at element " + std::to_string(i) +
                       " has magnitude 0 with the sign bit set");
      });
      if (tail) format_error(where + ": unused bits after the last log2 code must be 0");
    } else if (t.format == TFormat::Codebook) {
      const uint32_t lim = static_cast<uint32_t>(t.lut_size);
      uint32_t tail;
      if (t.lut_size == (int64_t{1} << t.bits)) {  // every index fits: only the tail bits to check
        uint64_t used = static_cast<uint64_t>(t.numel) * t.bits % 8;
        tail = used && t.data.size ? t.data.data[t.data.size - 1] >> used : 0;
      } else {
        tail = for_each_code(t.data.data, t.numel, t.bits, [&](int64_t i, uint32_t idx) {
          if (idx >= lim)
            format_error(where + ": codebook index " + std::to_string(idx) + " at element " + std::to_string(i) +
                         " >= lut size " + std::to_string(lim));
        });
      }
      if (tail) format_error(where + ": unused bits after the last codebook index must be 0");
    } else if (t.format == TFormat::Csr) {
      if (t.index_bits) decode_relative(t, where);
      check_csr(t, where);
      check_contents(*t.values);
    }
  }

  // Relative CSR indices (docs/format.md): per row a cursor starts at -1; code c < E moves it
  // by c + 1 and places the next entry, the escape E moves it by E. Decodes them into absolute
  // uint16 (cols <= 65536) or int32 indices owned by the model; the codes must end exactly at
  // the buffer's end (unused bits of the last byte zero) and never pass the last column.
  void decode_relative(TensorDef& t, const std::string& where) {
    const int64_t rows = t.shape[0], cols = t.shape[1];
    const int bits = t.index_bits;
    const uint32_t esc = (1u << bits) - 1;
    const uint8_t* p = t.indices.data;
    const uint64_t size = t.indices.size, max_codes = size * 8 / bits;
    auto ptr = [&](int64_t r) -> int64_t {
      return t.indptr_dtype == DType::I64 ? t.indptr.as<int64_t>()[r] : t.indptr.as<int32_t>()[r];
    };
    if (ptr(0) != 0) format_error(where + ": CSR indptr[0] is " + std::to_string(ptr(0)) + ", must be 0");
    for (int64_t r = 0; r < rows; ++r)
      if (ptr(r + 1) < ptr(r) || ptr(r + 1) > t.nnz)
        format_error(where + ": CSR indptr is not non-decreasing within 0..nnz at row " + std::to_string(r));
    const bool wide = cols > 65536;
    // nnz <= 8 * size / bits (checked with the buffer size), so this is bounded by the file
    auto buf = std::make_unique<uint8_t[]>(static_cast<size_t>(t.nnz) * (wide ? 4 : 2) + 1);
    uint64_t ci = 0;
    int64_t j = 0;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t pos = -1;
      for (int64_t n = ptr(r + 1) - ptr(r); n > 0; --n) {
        for (;;) {
          if (ci >= max_codes)
            format_error(where + ": relative CSR indices end before the entries of row " + std::to_string(r));
          const uint32_t c = packed_code(p, static_cast<int64_t>(ci++), bits);  // ci < max_codes: inside
          pos += c == esc ? esc : c + 1;
          if (pos >= cols)
            format_error(where + ": relative CSR index of row " + std::to_string(r) + " passes the last column " +
                         std::to_string(cols - 1));
          if (c != esc) break;
        }
        if (wide) reinterpret_cast<int32_t*>(buf.get())[j++] = static_cast<int32_t>(pos);
        else reinterpret_cast<uint16_t*>(buf.get())[j++] = static_cast<uint16_t>(pos);
      }
    }
    const uint64_t used = (ci * bits + 7) / 8;
    if (used != size)
      format_error(where + ": relative CSR indices use " + std::to_string(used) + " bytes, the buffer holds " +
                   std::to_string(size));
    if ((ci * bits) % 8 && (p[size - 1] >> ((ci * bits) % 8)))
      format_error(where + ": unused bits after the last relative CSR index must be 0");
    t.indices.data = buf.get();
    t.indices.size = static_cast<uint64_t>(t.nnz) * (wide ? 4 : 2);
    t.indices_dtype = wide ? DType::I32 : DType::U16;
    m_->owned.push_back(std::move(buf));
  }

  template <typename IP, typename IX>
  void check_csr_typed(const TensorDef& t, const std::string& where) {
    const IP* ip = t.indptr.as<IP>();
    const IX* ix = t.indices.as<IX>();
    const int64_t rows = t.shape[0], cols = t.shape[1];
    if (ip[0] != 0) format_error(where + ": CSR indptr[0] is " + std::to_string(ip[0]) + ", must be 0");
    for (int64_t r = 0; r < rows; ++r)
      if (ip[r + 1] < ip[r])
        format_error(where + ": CSR indptr decreases at row " + std::to_string(r) + " (" + std::to_string(ip[r]) +
                     " -> " + std::to_string(ip[r + 1]) + ")");
    if (static_cast<int64_t>(ip[rows]) != t.nnz)
      format_error(where + ": CSR indptr[" + std::to_string(rows) + "] is " + std::to_string(ip[rows]) +
                   ", must equal nnz " + std::to_string(t.nnz));
    for (int64_t j = 0; j < t.nnz; ++j) {
      int64_t col = static_cast<int64_t>(ix[j]);
      if (col < 0 || col >= cols)
        format_error(where + ": CSR column index " + std::to_string(col) + " out of range [0, " +
                     std::to_string(cols) + ")");
    }
  }

  void check_csr(const TensorDef& t, const std::string& where) {
    const bool ip64 = t.indptr_dtype == DType::I64, ix32 = t.indices_dtype == DType::I32;
    if (ip64 && ix32) check_csr_typed<int64_t, int32_t>(t, where);
    else if (ip64) check_csr_typed<int64_t, uint16_t>(t, where);
    else if (ix32) check_csr_typed<int32_t, int32_t>(t, where);
    else check_csr_typed<int32_t, uint16_t>(t, where);
  }

  // ---- 5. graph ----------------------------------------------------------
  static DType decoded_dtype(const TensorDef& t) { return t.format == TFormat::Dense ? t.dtype : DType::F32; }

  std::string value_label(int32_t id) const { return "value '" + m_->values[id].name + "'"; }

  int32_t value_id(Cursor& c, const std::string& what) {
    int32_t id = c.get<int32_t>(what);
    if (id < 0 || static_cast<size_t>(id) >= m_->values.size())
      format_error(what + " refers to value id " + std::to_string(id) + ", out of range [0, " +
                   std::to_string(m_->values.size()) + ")");
    return id;
  }

  void read_graph() {
    Cursor c(b_ + graph_.off, graph_.size, "graph section");
    const size_t ntensors = m_->tensors.size();

    // values
    uint32_t nv = c.count("value count", 12);
    m_->values.resize(nv);
    std::unordered_map<std::string, int32_t> names;
    names.reserve(nv);
    std::vector<uint8_t> defined(nv, 0);
    for (uint32_t i = 0; i < nv; ++i) {
      ValueDef& v = m_->values[i];
      const std::string w = "value " + std::to_string(i);
      v.name = c.str(w + " name", kMaxName);
      if (v.name.empty()) format_error("graph section: " + w + " has an empty name");
      if (!names.emplace(v.name, static_cast<int32_t>(i)).second)
        format_error("graph section: value name '" + v.name + "' appears twice");
      const std::string vw = "value '" + v.name + "'";
      uint8_t dt = c.get<uint8_t>(vw + " dtype");
      uint8_t rank = c.get<uint8_t>(vw + " rank");
      if (c.get<uint16_t>(vw + " reserved") != 0) format_error(vw + ": reserved field must be 0");
      v.tensor = c.get<int32_t>(vw + " tensor");
      if (!valid_dtype(dt)) format_error(vw + ": unknown dtype code " + std::to_string(dt));
      v.dtype = static_cast<DType>(dt);
      if (rank > kMaxRank) format_error(vw + ": rank " + std::to_string(rank) + " exceeds " + std::to_string(kMaxRank));
      v.shape.resize(rank);
      for (uint32_t d = 0; d < rank; ++d) {
        v.shape[d] = c.get<int64_t>(vw + " dim " + std::to_string(d));
        if (v.shape[d] < -1) format_error(vw + ": dimension " + std::to_string(v.shape[d]) + " < -1");
      }
      if (v.tensor < -1 || v.tensor >= static_cast<int64_t>(ntensors))
        format_error(vw + ": tensor index " + std::to_string(v.tensor) + " out of range [-1, " +
                     std::to_string(ntensors) + ")");
      if (v.tensor >= 0) {
        const TensorDef& t = m_->tensors[v.tensor];
        if (v.dtype != decoded_dtype(t))
          format_error(vw + ": dtype " + dtype_name(v.dtype) + " does not match its tensor '" + t.name + "' (" +
                       dtype_name(decoded_dtype(t)) + ")");
        defined[i] = 1;
      }
    }

    // graph inputs
    uint32_t ni = c.count("input count", 4);
    m_->inputs.reserve(ni);
    for (uint32_t k = 0; k < ni; ++k) {
      int32_t id = value_id(c, "graph input " + std::to_string(k));
      if (defined[id])
        format_error("graph input " + std::to_string(k) + ": " + value_label(id) +
                     (m_->values[id].tensor >= 0 ? " is a constant" : " is listed twice") +
                     ": value is defined twice");
      defined[id] = 1;
      m_->inputs.push_back(id);
    }

    // graph outputs (checked once the nodes are read)
    uint32_t no = c.count("output count", 4);
    m_->outputs.reserve(no);
    for (uint32_t k = 0; k < no; ++k) m_->outputs.push_back(value_id(c, "graph output " + std::to_string(k)));

    // nodes
    uint32_t nn = c.count("node count", 20);
    m_->nodes.resize(nn);
    for (uint32_t k = 0; k < nn; ++k) {
      NodeDef& n = m_->nodes[k];
      const std::string nw = "node " + std::to_string(k);
      n.op = c.str(nw + " op", kMaxName);
      n.name = c.str(nw + " name", kMaxName);
      const std::string where = "node " + std::to_string(k) + " '" + n.name + "' (" + n.op + ")";
      const OpSchema* s = find_op_schema(n.op);
      if (!s) format_error(where + ": unknown op '" + n.op + "'");
      uint32_t nin = c.count(where + " input count", 4);
      if (static_cast<int>(nin) < s->min_inputs || static_cast<int>(nin) > s->max_inputs)
        format_error(where + ": " + std::to_string(nin) + " inputs, expected " + std::to_string(s->min_inputs) +
                     ".." + std::to_string(s->max_inputs));
      n.inputs.reserve(nin);
      for (uint32_t j = 0; j < nin; ++j) {
        int32_t id = value_id(c, where + " input " + std::to_string(j));
        if (!defined[id])
          format_error(where + ": input " + std::to_string(j) + " reads " + value_label(id) +
                       " before it is defined");
        n.inputs.push_back(id);
      }
      uint32_t nout = c.count(where + " output count", 4);
      if (static_cast<int>(nout) != s->num_outputs)
        format_error(where + ": " + std::to_string(nout) + " outputs, expected " + std::to_string(s->num_outputs));
      n.outputs.reserve(nout);
      for (uint32_t j = 0; j < nout; ++j) {
        int32_t id = value_id(c, where + " output " + std::to_string(j));
        if (defined[id]) format_error(where + ": output " + value_label(id) + " is defined twice");
        defined[id] = 1;
        n.outputs.push_back(id);
      }
      uint32_t na = c.count(where + " attribute count", 9);
      for (uint32_t j = 0; j < na; ++j) read_attr(c, n, *s, where);
      check_node_attrs(n, *s, where);
    }
    for (size_t k = 0; k < m_->outputs.size(); ++k)
      if (!defined[m_->outputs[k]])
        format_error("graph output " + std::to_string(k) + ": " + value_label(m_->outputs[k]) +
                     " is never computed");

    // metadata
    uint32_t nm = c.count("metadata count", 8);
    for (uint32_t k = 0; k < nm; ++k) {
      std::string key = c.str("metadata key " + std::to_string(k), kMaxName);
      std::string val = c.str("metadata '" + key + "' value", c.left());
      if (!m_->metadata.emplace(std::move(key), std::move(val)).second)
        format_error("graph section: metadata key appears twice");
    }
    c.expect_end();
  }

  void read_attr(Cursor& c, NodeDef& n, const OpSchema& s, const std::string& where) {
    std::string key = c.str(where + " attribute name", kMaxName);
    const std::string aw = where + ": attribute '" + key + "'";
    uint8_t kind = c.get<uint8_t>(aw + " kind");
    const AttrSpec* spec = s.find(key);
    if (!spec) format_error(where + ": unknown attribute '" + key + "'");
    if (kind < AttrValue::Int || kind > AttrValue::Floats)
      format_error(aw + ": unknown attribute kind " + std::to_string(kind));
    if (kind != spec->def.kind)
      format_error(aw + " must be " + attr_kind_name(spec->def.kind) + ", got " +
                   attr_kind_name(static_cast<AttrValue::Kind>(kind)));
    AttrValue v;
    v.kind = static_cast<AttrValue::Kind>(kind);
    switch (v.kind) {
      case AttrValue::Int: v.i = c.get<int64_t>(aw); break;
      case AttrValue::Float: v.f = c.get<double>(aw); break;
      case AttrValue::Str: v.s = c.str(aw, kMaxName); break;
      case AttrValue::Ints: {
        uint32_t len = c.count(aw + " length", 8);
        v.ints.resize(len);
        for (uint32_t i = 0; i < len; ++i) v.ints[i] = c.get<int64_t>(aw);
        break;
      }
      case AttrValue::Floats: {
        uint32_t len = c.count(aw + " length", 8);
        v.floats.resize(len);
        for (uint32_t i = 0; i < len; ++i) v.floats[i] = c.get<double>(aw);
        break;
      }
    }
    if (!n.attrs.emplace(key, std::move(v)).second) format_error(aw + " appears twice");
  }

  struct Section {
    bool present = false;
    uint64_t off = 0, size = 0;
  };

  std::shared_ptr<MappedFile> file_;
  const uint8_t* b_;
  uint64_t n_;
  ModelDef* m_ = nullptr;
  uint32_t nsec_ = 0;
  uint64_t table_end_ = 0;
  Section graph_, table_, data_;
  std::vector<BufRef> bufs_;
};

}  // namespace

std::shared_ptr<const ModelDef> load_model_file(const std::string& path) {
  auto f = MappedFile::open(path);
  try {
    auto m = Loader(f).run();
    // Validation read every byte; consumers read what they need again (a runtime packs each tensor
    // once), so the pages need not all stay resident meanwhile.
    f->release_pages();
    return m;
  } catch (const Error& e) {
    if (e.code() != Code::Format) throw;
    throw Error(Code::Format, "'" + path + "': " + e.what());
  }
}

std::shared_ptr<const ModelDef> load_model_memory(const void* data, size_t size) {
  return Loader(MappedFile::copy_of(data, size)).run();
}

}  // namespace slimrt

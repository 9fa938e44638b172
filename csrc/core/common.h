// Common definitions shared by every layer of the C++ runtime: error type,
// checked integer arithmetic, aligned buffers. No ISA-specific code here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <new>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace slimrt {

// Error codes, shared with the C API (slimrt_status_t) and mapped to Python
// exception classes (Error, FormatError, InputError, UnsupportedError).
enum class Code : int {
  Ok = 0,
  InvalidArgument = 1,   // bad call arguments / input shape or dtype -> slimrt.InputError
  Format = 2,            // malformed or hostile .slim file -> slimrt.FormatError
  Unsupported = 3,       // op/format/ISA not available -> slimrt.UnsupportedError
  Io = 4,                // file cannot be opened/read/mapped -> slimrt.Error (OSError-like)
  OutOfMemory = 5,
  Internal = 6,
};

class Error : public std::runtime_error {
 public:
  Error(Code code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  Code code() const { return code_; }
 private:
  Code code_;
};

[[noreturn]] inline void fail(Code code, const std::string& msg) { throw Error(code, msg); }
[[noreturn]] inline void format_error(const std::string& msg) { throw Error(Code::Format, msg); }

// Checked arithmetic for sizes read from untrusted files.
inline bool mul_overflow_u64(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}
inline bool add_overflow_u64(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}

// 64-byte aligned heap buffer (free with aligned_free / AlignedBuffer).
// Buffers of kHugeMin bytes or more (packed weights, big arenas) are aligned to 2 MB and
// advised as transparent huge pages: streaming a 64 MB weight panel through 4 KB pages
// costs a TLB miss per page and stream (numpy does the same for its large arrays).
constexpr size_t kAlign = 64;
// n rounded up to a multiple of kAlign (workspace carving: every piece starts on a cache line).
constexpr size_t align64(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
// Software prefetch towards L2 (a hint) of slice i of n equal slices of the bytes [p, p + bytes): a loop
// that fetches a long range behind its work calls it once per step, i = the step.
inline void prefetch_slice(const void* p, int64_t bytes, int64_t i, int64_t n) {
  const char* c = static_cast<const char*>(p);
  const int64_t end = bytes * (i + 1) / n;
  for (int64_t off = (bytes * i / n) & ~int64_t{63}; off < end; off += 64) __builtin_prefetch(c + off, 0, 2);
}
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugeMin = size_t(4) << 20;
inline void* aligned_alloc_bytes(size_t n) {
  if (n == 0) n = kAlign;
  const size_t align = n >= kHugeMin ? kHugePage : kAlign;
  if (n > SIZE_MAX - align) throw Error(Code::OutOfMemory, "allocation of " + std::to_string(n) + " bytes is too large");
  size_t rounded = (n + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (!p) throw Error(Code::OutOfMemory, "out of memory allocating " + std::to_string(n) + " bytes");
#ifdef MADV_HUGEPAGE
  if (align == kHugePage) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return p;
}
struct AlignedFree { void operator()(void* p) const { std::free(p); } };
template <typename T>
using AlignedPtr = std::unique_ptr<T[], AlignedFree>;
template <typename T>
AlignedPtr<T> aligned_array(size_t count) {
  return AlignedPtr<T>(static_cast<T*>(aligned_alloc_bytes(count * sizeof(T))));
}

}  // namespace slimrt

// Interface between the baseline CSR driver (spmm.cpp) and the per-ISA CSR
// kernels (spmm_<isa>.cpp). POD structs and declarations only: this header is
// included by files compiled with different -m flags.
#pragma once
#include <cstdint>

namespace slimrt::kernels::detail {

struct CsrView {
  const int64_t* indptr;   // rows + 1
  const void* indices;     // uint16 (idx16) or int32; readable 64 bytes past nnz
  const void* values;      // f32, int8 (int8) or uint8 codes (codes); readable 64 bytes past nnz
  bool idx16;
  bool int8;
  bool codes;
  const float* table;      // codes: row n's 16 entries at table + n * table_stride
  int64_t table_stride;    // 0 (one shared table) or 16
};

// acc[n - n0] = sum_j v[j] * x[col[j]]  for rows n in [n0, n1).
using CsrGemvFn = void (*)(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc);
// acc[(n - n0) * mb + i] = sum_j v[j] * xt[col[j] * mb + i]  for i < mb, rows n in [n0, n1).
// xt is 64-byte aligned, mb a multiple of the ISA's vector width (<= 4 vectors).
using CsrTileFn = void (*)(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc);

namespace avx2 {
constexpr int kCsrLanes = 8;
void csr_gemv(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc);
void csr_tile(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc);
}  // namespace avx2
namespace avx512 {
constexpr int kCsrLanes = 16;
void csr_gemv(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc);
void csr_tile(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc);
}  // namespace avx512

}  // namespace slimrt::kernels::detail

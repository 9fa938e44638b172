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

// The sliced-ELL batch-1 layout (CsrSell in spmm.h).
struct SellView {
  int64_t nb;              // window positions per slice
  int64_t advance;         // columns from one window to the next (window: 2 * lanes columns)
  const uint8_t* cnt;      // [slices][nb] steps per (slice, block)
  const int64_t* off;      // [slices + 1] first step of each slice
  const uint8_t* idx;      // [steps][lanes] in-block columns
  const void* values;      // [steps][lanes] f32 / int8 / u8 codes
  int vkind;               // 0 f32, 1 int8, 2 codes (padding: a 0 code), 3 codes (padding: index bit 7)
  const float* table;      // codes: 16 entries
};

// acc[r * lda + (s - s0) * lanes + l] = sum over the steps of slice s, lane l, with x row r, for
// slices [s0, s1) and `rows` activation rows (<= kSellRows of the ISA) at xp, ldx apart (64-byte
// aligned), each padded with zeros to (nb - 1) * advance + 2 * lanes floats.
using SellGemvFn = void (*)(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, int rows,
                            float* acc, int64_t lda);

// acc[n - n0] = sum_j v[j] * x[col[j]]  for rows n in [n0, n1).
using CsrGemvFn = void (*)(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc);
// acc[(n - n0) * mb + i] = sum_j v[j] * xt[col[j] * mb + i]  for i < mb, rows n in [n0, n1).
// xt is 64-byte aligned, mb a multiple of the ISA's vector width (<= 4 vectors).
using CsrTileFn = void (*)(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc);

namespace avx2 {
constexpr int kCsrLanes = 8;
void csr_gemv(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc);
void csr_tile(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc);
constexpr int kSellRows = 2;
void sell_gemv(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, int rows, float* acc,
               int64_t lda);
}  // namespace avx2
namespace avx512 {
constexpr int kCsrLanes = 16;
void csr_gemv(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc);
void csr_tile(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc);
constexpr int kSellRows = 4;
void sell_gemv(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, int rows, float* acc,
               int64_t lda);
}  // namespace avx512

}  // namespace slimrt::kernels::detail

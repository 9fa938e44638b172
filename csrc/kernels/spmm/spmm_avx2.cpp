// AVX2 CSR kernels (bodies in spmm_impl.h, 8-lane ymm policy here).
//   csr_gemv: 16 nnz per step in two accumulators, x[col] assembled from scalar
//             loads (faster than vgatherdps on Zen 4); the tail uses a lane mask.
//   csr_tile: per nnz one broadcast of v[j] and mb/8 FMAs with the xt row col[j].
//   sell_gemv: the sliced-ELL batch-1 layout (CsrSell in spmm.h) with 8 rows per slice
//             and disjoint 16-column x windows in two registers: a step is 8 u8 columns ->
//             two vpermps and a blend on column bit 3, 8 values, one FMA; up to 2
//             activation rows share each step's loads (16 ymm registers).
// Codes: the 16-entry table lives in two ymm registers (two vpermps and a blend on code bit 3).
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/eltwise/vec_avx2.h"
#include "kernels/spmm/spmm_internal.h"

namespace slimrt::kernels::detail::avx2 {
namespace {

// zero, set1, store (unaligned), fma, add, hsum from VecAvx2.
struct V : VecAvx2 {
  using Vec = __m256;
  using Mask = __m256;  // all-ones lanes active
  struct Table { __m256 lo, hi; };
  struct Idx { __m256i i; __m256 hi; };  // columns; column bit 3 moved to the sign bit
  static constexpr int W = 8, kSellRows = avx2::kSellRows;
  static Vec load(const float* p) { return _mm256_load_ps(p); }  // aligned
  static Mask first(int n) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  static Vec keep(Mask m, Vec x) { return _mm256_and_ps(m, x); }
  // x[col[j .. j+7]] from scalar loads (faster than vgatherdps on Zen 4; see spmm_avx512.cpp).
  // uint16 columns are read 4 at a time.
  template <bool I16>
  static Vec gather(const void* indices, int64_t j, const float* x) {
    __m128 q[2];
    if constexpr (I16) {
      const uint16_t* c = static_cast<const uint16_t*>(indices) + j;
      for (int t = 0; t < 2; ++t) {
        uint64_t v;
        std::memcpy(&v, c + 4 * t, 8);
        q[t] = _mm_set_ps(x[v >> 48], x[(v >> 32) & 0xFFFF], x[(v >> 16) & 0xFFFF], x[v & 0xFFFF]);
      }
    } else {
      const int32_t* c = static_cast<const int32_t*>(indices) + j;
      for (int t = 0; t < 2; ++t) q[t] = _mm_set_ps(x[c[4 * t + 3]], x[c[4 * t + 2]], x[c[4 * t + 1]], x[c[4 * t]]);
    }
    return _mm256_insertf128_ps(_mm256_castps128_ps256(q[0]), q[1], 1);
  }
  static Table table(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  static Table no_table() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static Vec values_f32(const void* v, int64_t j) { return _mm256_loadu_ps(static_cast<const float*>(v) + j); }
  static Vec values_i8(const void* v, int64_t j) {
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(v) + j))));
  }
  static Vec values_codes(const void* v, int64_t j, Table t) {
    const __m256i c = _mm256_cvtepu8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(v) + j)));
    const __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));  // bit 3 -> sign bit
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t.lo, c), _mm256_permutevar8x32_ps(t.hi, c), hi);
  }
  static Idx sell_idx(const uint8_t* p) {
    const __m256i i = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return {i, _mm256_castsi256_ps(_mm256_slli_epi32(i, 28))};
  }
  // two vpermps (bits 0..2) and a blend on column bit 3
  static Vec sell_x(Vec xl, Vec xh, const Idx& i) {
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(xl, i.i), _mm256_permutevar8x32_ps(xh, i.i), i.hi);
  }
  static Vec sell_codes_pad(const void* v, int64_t j, const Idx& i, Table t) {  // (the table has no 0)
    const __m256 real = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x80), i.i));
    return _mm256_and_ps(real, values_codes(v, j, t));
  }
};

}  // namespace

#include "kernels/spmm/spmm_impl.h"

}  // namespace slimrt::kernels::detail::avx2

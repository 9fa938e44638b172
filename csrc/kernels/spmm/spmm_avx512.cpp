// AVX-512 CSR kernels (bodies in spmm_impl.h, 16-lane zmm policy here).
//   csr_gemv: per CSR row, 32 nnz per step in two accumulators: x[col] assembled
//             from scalar loads (faster than vgatherdps on Zen 4, see gather),
//             values widened (int8 -> f32) and FMA'd; the ragged tail uses masks.
//   csr_tile: per CSR row, each nnz broadcasts v[j] and FMAs it with the xt row
//             col[j] (mb = 16 * NV floats); U independent accumulator sets hide
//             the FMA latency when NV is small.
//   sell_gemv: the sliced-ELL batch-1 layout (CsrSell in spmm.h): 16 rows per slice
//             (one lane each), 32-column x windows (advancing by 16) in two registers;
//             a step is 16 u8 in-window columns -> vpermt2ps picks x, 16 values, one
//             FMA; up to 4 activation rows share each step's index and value loads.
//             Four accumulators per row rotate over a position's steps (FMA latency).
// Codes: the 16-entry table is one zmm register (one vpermps per 16 values).
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/eltwise/vec_avx512.h"
#include "kernels/spmm/spmm_internal.h"

namespace slimrt::kernels::detail::avx512 {
namespace {

// zero, set1, store (unaligned), fma, add, hsum from VecAvx512.
struct V : VecAvx512 {
  using Vec = __m512;
  using Mask = __mmask16;
  using Table = __m512;
  using Idx = __m512i;
  static constexpr int W = 16, kSellRows = avx512::kSellRows;
  static Vec load(const float* p) { return _mm512_load_ps(p); }  // aligned
  static Mask first(int n) { return __mmask16((1u << n) - 1); }
  static Vec keep(Mask m, Vec x) { return _mm512_maskz_mov_ps(m, x); }
  // x[col[j .. j+15]] as one vector, built from scalar loads. On Zen 4 this is about
  // twice as fast as vgatherdps (measured 1024x1024 at 90% sparsity: 42 vs 89 us):
  // the gather is microcoded there, while 16 loads + insertps stay on the load and
  // shuffle ports. uint16 columns are read 4 at a time and split with shifts.
  template <bool I16>
  static Vec gather(const void* indices, int64_t j, const float* x) {
    __m128 q[4];
    if constexpr (I16) {
      const uint16_t* c = static_cast<const uint16_t*>(indices) + j;
      for (int t = 0; t < 4; ++t) {
        uint64_t v;
        std::memcpy(&v, c + 4 * t, 8);
        q[t] = _mm_set_ps(x[v >> 48], x[(v >> 32) & 0xFFFF], x[(v >> 16) & 0xFFFF], x[v & 0xFFFF]);
      }
    } else {
      const int32_t* c = static_cast<const int32_t*>(indices) + j;
      for (int t = 0; t < 4; ++t) q[t] = _mm_set_ps(x[c[4 * t + 3]], x[c[4 * t + 2]], x[c[4 * t + 1]], x[c[4 * t]]);
    }
    const __m256 lo = _mm256_insertf128_ps(_mm256_castps128_ps256(q[0]), q[1], 1);
    const __m256 hi = _mm256_insertf128_ps(_mm256_castps128_ps256(q[2]), q[3], 1);
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
  }
  static Table table(const float* p) { return _mm512_loadu_ps(p); }
  static Table no_table() { return _mm512_setzero_ps(); }
  static Vec values_f32(const void* v, int64_t j) { return _mm512_loadu_ps(static_cast<const float*>(v) + j); }
  static Vec values_i8(const void* v, int64_t j) {
    return _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(v) + j))));
  }
  static __m512i codes16(const void* v, int64_t j) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(v) + j)));
  }
  static Vec values_codes(const void* v, int64_t j, Table t) { return _mm512_permutexvar_ps(codes16(v, j), t); }
  static Idx sell_idx(const uint8_t* p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static Vec sell_x(Vec xl, Vec xh, Idx i) { return _mm512_permutex2var_ps(xl, i, xh); }  // vpermt2ps: bits 0..4
  static Vec sell_codes_pad(const void* v, int64_t j, Idx i, Table t) {  // (the table has no 0)
    return _mm512_maskz_permutexvar_ps(_mm512_testn_epi32_mask(i, _mm512_set1_epi32(0x80)), codes16(v, j), t);
  }
};

}  // namespace

#include "kernels/spmm/spmm_impl.h"

}  // namespace slimrt::kernels::detail::avx512

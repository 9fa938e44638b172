// AVX2 LUT-GEMM kernel (layout: lutgemm.h, 8-dword blocks; body in lutgemm_impl.h).
//   lut_rows: 2 weight rows x P <= 4 activation rows per call, over all of K;
//             per chunk a shift by sb exposes the next 8 indices; sb = 4 decodes
//             with two 8-entry vpermps and a blend on index bit 3, sb = 1, 2 with
//             one vpermps (the table is replicated), sb = 8 with vgatherdps.
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/eltwise/vec_avx2.h"
#include "kernels/lutgemm/lutgemm_internal.h"

namespace slimrt::kernels::detail::avx2 {
namespace {

// zero, load (unaligned), fma, hsum from VecAvx2.
struct V : VecAvx2 {
  using Vec = __m256;
  using Bits = __m256i;
  struct Table { __m256 lo, hi; };
  static constexpr int W = 8, kRows = 2;
  static constexpr bool kXRegs = false;  // 16 ymm: x stays in memory operands
  static Bits load_bits(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  template <int SB>
  static Bits srli(Bits v) { return _mm256_srli_epi32(v, SB); }
  static Table table(const float* tp) { return {_mm256_loadu_ps(tp), _mm256_loadu_ps(tp + 8)}; }
  static Table no_table() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  template <int SB>
  static Vec decode(Bits v, const Table& t, const float* tp) {
    if constexpr (SB <= 2) {
      return _mm256_permutevar8x32_ps(t.lo, v);
    } else if constexpr (SB == 4) {
      const __m256 a = _mm256_permutevar8x32_ps(t.lo, v), b = _mm256_permutevar8x32_ps(t.hi, v);
      return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(v, 28)));
    } else {
      return _mm256_i32gather_ps(tp, _mm256_and_si256(v, _mm256_set1_epi32(0xFF)), 4);
    }
  }
};

}  // namespace

#include "kernels/lutgemm/lutgemm_impl.h"

}  // namespace slimrt::kernels::detail::avx2

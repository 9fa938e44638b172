// AVX-512 LUT-GEMM kernel (layout: lutgemm.h, 16-dword blocks; body in lutgemm_impl.h).
//   lut_rows: 4 weight rows x P <= 4 activation rows per call, over all of K.
//             Per weight row and block: one 64-byte load of 16 dwords; per chunk
//             a shift by sb exposes the next 16 indices, vpermps (sb <= 4: the
//             16-entry table in one zmm) or vgatherdps (sb = 8) decodes them, and
//             the decoded vector feeds P FMAs (one accumulator per row pair).
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/eltwise/vec_avx512.h"
#include "kernels/lutgemm/lutgemm_internal.h"

namespace slimrt::kernels::detail::avx512 {
namespace {

// zero, load (unaligned), fma, hsum from VecAvx512.
struct V : VecAvx512 {
  using Vec = __m512;
  using Bits = __m512i;
  using Table = __m512;
  static constexpr int W = 16, kRows = 4;
  static constexpr bool kXRegs = true;  // 32 zmm: the P x vectors fit
  static Bits load_bits(const uint8_t* p) { return _mm512_loadu_si512(p); }
  template <int SB>
  static Bits srli(Bits v) { return _mm512_srli_epi32(v, SB); }
  static Table table(const float* tp) { return _mm512_loadu_ps(tp); }
  static Table no_table() { return _mm512_setzero_ps(); }
  template <int SB>
  static Vec decode(Bits v, Table table, const float* tp) {
    if constexpr (SB <= 4) {
      return _mm512_permutexvar_ps(v, table);  // uses the low 4 bits of each lane
    } else {
      return _mm512_i32gather_ps(_mm512_and_si512(v, _mm512_set1_epi32(0xFF)), tp, 4);
    }
  }
};

}  // namespace

#include "kernels/lutgemm/lutgemm_impl.h"

}  // namespace slimrt::kernels::detail::avx512

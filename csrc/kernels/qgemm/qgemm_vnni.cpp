// AVX-512 VNNI int8 GEMM microkernel 8x48c4.
//
// B panel [Kp/4][48][4] s8: per group of 4 K values three 64-byte loads cover 48 columns x
// 4 K. Each row of A (u8, row-major, Kp bytes) broadcasts its 4 bytes to all lanes and
// vpdpbusd adds the four u8*s8 products of every lane straight into an int32 accumulator
// (no int16 intermediate, so no saturation; the sum is exact while |acc| < 2^31, which
// K <= 65536 guarantees). 8x3 zmm accumulators + 3 B + 1 broadcast = 28 registers.
// Rows <= 2 (GEMV) use two accumulator sets over even/odd groups to hide vpdpbusd latency.
// gcc 12's AVX-512 headers self-initialise their "undefined" vectors (__Y = __Y), which
// -Wall reports at -O3 (GCC bug 105593): silence that false positive for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/qgemm/qgemm_internal.h"

namespace slimrt::kernels::detail::vnni {
namespace {

inline int32_t load32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <int R>
void kernel_8x48c4(int64_t kg, const uint8_t* a, int64_t lda, const int8_t* b, int32_t* acc) {
  constexpr int S = R <= 2 ? 2 : 1;
  __m512i c[S][R][3];
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
      for (int j = 0; j < 3; ++j) c[s][r][j] = _mm512_setzero_si512();
  int64_t g = 0;
  for (; g + S <= kg; g += S) {
#pragma GCC unroll 2
    for (int s = 0; s < S; ++s) {
      const int8_t* bp = b + (g + s) * 192;
      const __m512i b0 = _mm512_loadu_si512(bp);
      const __m512i b1 = _mm512_loadu_si512(bp + 64);
      const __m512i b2 = _mm512_loadu_si512(bp + 128);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i av = _mm512_set1_epi32(load32(a + r * lda + 4 * (g + s)));
        c[s][r][0] = _mm512_dpbusd_epi32(c[s][r][0], av, b0);
        c[s][r][1] = _mm512_dpbusd_epi32(c[s][r][1], av, b1);
        c[s][r][2] = _mm512_dpbusd_epi32(c[s][r][2], av, b2);
      }
    }
  }
  for (; g < kg; ++g) {
    const int8_t* bp = b + g * 192;
    const __m512i b0 = _mm512_loadu_si512(bp);
    const __m512i b1 = _mm512_loadu_si512(bp + 64);
    const __m512i b2 = _mm512_loadu_si512(bp + 128);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512i av = _mm512_set1_epi32(load32(a + r * lda + 4 * g));
      c[0][r][0] = _mm512_dpbusd_epi32(c[0][r][0], av, b0);
      c[0][r][1] = _mm512_dpbusd_epi32(c[0][r][1], av, b1);
      c[0][r][2] = _mm512_dpbusd_epi32(c[0][r][2], av, b2);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
    for (int j = 0; j < 3; ++j) {
      __m512i v = c[0][r][j];
      if (S == 2) v = _mm512_add_epi32(v, c[S - 1][r][j]);
      _mm512_storeu_si512(acc + r * 48 + j * 16, v);
    }
}

}  // namespace

void q8_gemm_8x48c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  const uint8_t* a8 = static_cast<const uint8_t*>(a);
  switch (rows) {
    case 1: kernel_8x48c4<1>(kgroups, a8, lda, b, acc); break;
    case 2: kernel_8x48c4<2>(kgroups, a8, lda, b, acc); break;
    case 3: kernel_8x48c4<3>(kgroups, a8, lda, b, acc); break;
    case 4: kernel_8x48c4<4>(kgroups, a8, lda, b, acc); break;
    case 5: kernel_8x48c4<5>(kgroups, a8, lda, b, acc); break;
    case 6: kernel_8x48c4<6>(kgroups, a8, lda, b, acc); break;
    case 7: kernel_8x48c4<7>(kgroups, a8, lda, b, acc); break;
    default: kernel_8x48c4<8>(kgroups, a8, lda, b, acc); break;
  }
}

}  // namespace slimrt::kernels::detail::vnni

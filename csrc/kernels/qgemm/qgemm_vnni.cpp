// AVX-512 VNNI int8 GEMM microkernels MRxNRc4: 8x48 (the default), 6x64, 12x32, 16x16.
// pack_q8_b picks the panel width that pads N least (N = 64 runs 6x64 instead of wasting a
// third of a second 48-wide panel), all tiles keeping 16-24 accumulators in flight.
//
// B panel [Kp/4][NR][4] s8: per group of 4 K values NR/16 64-byte loads cover NR columns x
// 4 K. Each row of A (u8, row-major, Kp bytes) broadcasts its 4 bytes to all lanes and
// vpdpbusd adds the four u8*s8 products of every lane straight into an int32 accumulator
// (no int16 intermediate, so no saturation; the sum is exact while |acc| < 2^31, which
// K <= 65536 guarantees). 8x3 zmm accumulators + 3 B + 1 broadcast = 28 registers (6x4 + 4 + 1,
// 12x2 + 2 + 1, 16x1 + 1 + 1). Tiles of <= 4 accumulators (GEMV rows) use two accumulator sets
// over even/odd groups to hide the vpdpbusd latency.
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

// NV zmm columns (NR = 16 * NV) x R rows; S independent accumulator sets over alternating
// K groups when there are too few accumulators to cover the vpdpbusd latency.
template <int NV, int R>
void kernel_c4(int64_t kg, const uint8_t* a, int64_t lda, const int8_t* b, int32_t* acc) {
  constexpr int NR = 16 * NV;
  constexpr int S = R * NV <= 4 ? 2 : 1;
  __m512i c[S][R][NV];
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) c[s][r][j] = _mm512_setzero_si512();
  int64_t g = 0;
  for (; g + S <= kg; g += S) {
#pragma GCC unroll 2
    for (int s = 0; s < S; ++s) {
      const int8_t* bp = b + (g + s) * (4 * NR);
      __m512i bv[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_si512(bp + 64 * j);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i av = _mm512_set1_epi32(load32(a + r * lda + 4 * (g + s)));
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) c[s][r][j] = _mm512_dpbusd_epi32(c[s][r][j], av, bv[j]);
      }
    }
  }
  for (; g < kg; ++g) {
    const int8_t* bp = b + g * (4 * NR);
    __m512i bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_si512(bp + 64 * j);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512i av = _mm512_set1_epi32(load32(a + r * lda + 4 * g));
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) c[0][r][j] = _mm512_dpbusd_epi32(c[0][r][j], av, bv[j]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      __m512i v = c[0][r][j];
      if (S == 2) v = _mm512_add_epi32(v, c[S - 1][r][j]);
      _mm512_storeu_si512(acc + r * NR + j * 16, v);
    }
}

// Indirect (implicit im2col) form: the K stream of row r is taps segments of kgt groups, segment t
// read from ap[r * taps + t] (an input pixel's channels, or a zero-point row for padding); B is
// the same packed panel as for the direct form (K = taps * 4 * kgt).
template <int NV, int R>
void kernel_c4_ind(int64_t taps, int64_t kgt, const uint8_t* const* ap, const int8_t* b, int32_t* acc) {
  constexpr int NR = 16 * NV;
  constexpr int S = R * NV <= 4 ? 2 : 1;
  __m512i c[S][R][NV];
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) c[s][r][j] = _mm512_setzero_si512();
  for (int64_t t = 0; t < taps; ++t) {
    const uint8_t* a[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) a[r] = ap[r * taps + t];
    const int8_t* bt = b + t * kgt * (4 * NR);
    int64_t g = 0;
    for (; g + S <= kgt; g += S) {
#pragma GCC unroll 2
      for (int s = 0; s < S; ++s) {
        const int8_t* bp = bt + (g + s) * (4 * NR);
        __m512i bv[NV];
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_si512(bp + 64 * j);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          const __m512i av = _mm512_set1_epi32(load32(a[r] + 4 * (g + s)));
#pragma GCC unroll 4
          for (int j = 0; j < NV; ++j) c[s][r][j] = _mm512_dpbusd_epi32(c[s][r][j], av, bv[j]);
        }
      }
    }
    for (; g < kgt; ++g) {
      const int8_t* bp = bt + g * (4 * NR);
      __m512i bv[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_si512(bp + 64 * j);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i av = _mm512_set1_epi32(load32(a[r] + 4 * g));
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) c[0][r][j] = _mm512_dpbusd_epi32(c[0][r][j], av, bv[j]);
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      __m512i v = c[0][r][j];
      if (S == 2) v = _mm512_add_epi32(v, c[S - 1][r][j]);
      _mm512_storeu_si512(acc + r * NR + j * 16, v);
    }
}

template <int NV, int MR, int R = MR>
void dispatch_ind(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  if constexpr (R > 1) {
    if (rows < R) return dispatch_ind<NV, MR, R - 1>(taps, kgt, ap, rows, b, acc);
  }
  kernel_c4_ind<NV, R>(taps, kgt, ap, b, acc);
}

// rows in [1, MR]: one instantiation per row count.
template <int NV, int MR, int R = MR>
void dispatch(int64_t kgroups, const uint8_t* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  if constexpr (R > 1) {
    if (rows < R) return dispatch<NV, MR, R - 1>(kgroups, a, lda, rows, b, acc);
  }
  kernel_c4<NV, R>(kgroups, a, lda, b, acc);
}

}  // namespace

void q8_gemm_8x48c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  dispatch<3, 8>(kgroups, static_cast<const uint8_t*>(a), lda, rows, b, acc);
}
void q8_gemm_6x64c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  dispatch<4, 6>(kgroups, static_cast<const uint8_t*>(a), lda, rows, b, acc);
}
void q8_gemm_12x32c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  dispatch<2, 12>(kgroups, static_cast<const uint8_t*>(a), lda, rows, b, acc);
}
void q8_gemm_16x16c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  dispatch<1, 16>(kgroups, static_cast<const uint8_t*>(a), lda, rows, b, acc);
}

void q8_igemm_8x48c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  dispatch_ind<3, 8>(taps, kgt, ap, rows, b, acc);
}
void q8_igemm_6x64c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  dispatch_ind<4, 6>(taps, kgt, ap, rows, b, acc);
}
void q8_igemm_12x32c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  dispatch_ind<2, 12>(taps, kgt, ap, rows, b, acc);
}
void q8_igemm_16x16c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  dispatch_ind<1, 16>(taps, kgt, ap, rows, b, acc);
}

}  // namespace slimrt::kernels::detail::vnni

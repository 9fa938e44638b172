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
// over even/odd groups to hide the vpdpbusd latency. The K loops (direct and indirect A) are
// qgemm_impl.h's (policy Q8C4Vnni below).
// gcc 12's AVX-512 headers self-initialise their "undefined" vectors (__Y = __Y), which
// -Wall reports at -O3 (GCC bug 105593): silence that false positive for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/qgemm/qgemm_internal.h"

namespace slimrt::kernels::detail::vnni {

#include "kernels/qgemm/qgemm_impl.h"

namespace {

// The microkernels' policy (qgemm_impl.h): 16 int32 lanes; a B vector is 64 s8 (16 columns x 4 K)
// loaded as is; vpdpbusd.
struct Q8C4Vnni {
  using I = __m512i;
  using A = uint8_t;
  static constexpr int W = 16, kAStep = 4, kBBytes = 64, kSplit = 4;
  static I zero() { return _mm512_setzero_si512(); }
  static I bcast(int32_t v) { return _mm512_set1_epi32(v); }
  static I load_b(const int8_t* p) { return _mm512_loadu_si512(p); }
  static I dot(I c, I a, I b) { return _mm512_dpbusd_epi32(c, a, b); }
  static I add(I a, I b) { return _mm512_add_epi32(a, b); }
  static void store(int32_t* p, I v) { _mm512_storeu_si512(p, v); }
};

}  // namespace

void q8_gemm_8x48c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch<Q8C4Vnni, 3, 8>(kgroups, a, lda, rows, b, acc);
}
void q8_gemm_6x64c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch<Q8C4Vnni, 4, 6>(kgroups, a, lda, rows, b, acc);
}
void q8_gemm_12x32c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch<Q8C4Vnni, 2, 12>(kgroups, a, lda, rows, b, acc);
}
void q8_gemm_16x16c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch<Q8C4Vnni, 1, 16>(kgroups, a, lda, rows, b, acc);
}

void q8_igemm_8x48c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch_ind<Q8C4Vnni, 3, 8>(taps, kgt, ap, rows, b, acc);
}
void q8_igemm_6x64c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch_ind<Q8C4Vnni, 4, 6>(taps, kgt, ap, rows, b, acc);
}
void q8_igemm_12x32c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch_ind<Q8C4Vnni, 2, 12>(taps, kgt, ap, rows, b, acc);
}
void q8_igemm_16x16c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch_ind<Q8C4Vnni, 1, 16>(taps, kgt, ap, rows, b, acc);
}

}  // namespace slimrt::kernels::detail::vnni

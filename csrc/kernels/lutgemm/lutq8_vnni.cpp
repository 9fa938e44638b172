// AVX-512 VNNI int8-table LUT-GEMM: vpshufb decode through each row's own 16-entry table
// (4 rows' tables per zmm, one per 128-bit lane). Kernel body: lutq8_vnni_impl.h.
// gcc 12's AVX-512 headers self-initialise their "undefined" vectors (GCC bug 105593), which
// -Wall reports at -O3: silenced for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/lutgemm/lutq8_internal.h"

namespace slimrt::kernels::detail::vnni {
namespace {
struct DecShuffle {
  using Table = __m512i;
  template <int SB>
  static __m512i load(const int8_t* t, __m512i) { return _mm512_loadu_si512(t); }
  // vpshufb: index bits 0-3 within the lane, bit 7 zeroes -> the AND keeps only the chunk's SB bits
  static __m512i decode(__m512i t, __m512i v, __m512i mask) { return _mm512_shuffle_epi8(t, _mm512_and_si512(v, mask)); }
};
}  // namespace
#include "kernels/lutgemm/lutq8_vnni_impl.h"
SLIMRT_LUTQ8_ROWS_ENTRY(DecShuffle)

void lutq8_bcast_row(const uint8_t* xq, int64_t Kp, uint8_t* xb) {
  for (int64_t c = 0; c < Kp; c += 16)
    _mm512_store_si512(xb + 4 * c, _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq + c))));
}
}  // namespace slimrt::kernels::detail::vnni

// AVX-512 VNNI + VBMI int8-table LUT-GEMM for a table shared by every row (log2, per-tensor
// codebooks): vpermb reads only the low 6 bits of each index byte, so with the table repeated
// every 2^SB entries across all 64 bytes the chunk's higher garbage bits select an identical
// copy and no AND is needed (Zen 4, K=N=1024 batch 1, 1 thread: 1.17-1.22x -> 1.30-1.34x of
// the int8 GEMM). Kernel body: lutq8_vnni_impl.h.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/lutgemm/lutq8_internal.h"

namespace slimrt::kernels::detail::vbmi {
namespace {
struct DecPermute {
  using Table = __m512i;
  // byte e of the result = t[e mod 2^SB] (lane 0 holds the shared table)
  template <int SB>
  static __m512i load(const int8_t* t, __m512i mask) {
    const __m512i iota = _mm512_set_epi8(63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45,
                                         44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26,
                                         25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
                                         4, 3, 2, 1, 0);
    return _mm512_permutexvar_epi8(_mm512_and_si512(iota, mask), _mm512_loadu_si512(t));
  }
  static __m512i decode(__m512i t, __m512i v, __m512i) { return _mm512_permutexvar_epi8(v, t); }
};
}  // namespace
#include "kernels/lutgemm/lutq8_vnni_impl.h"
SLIMRT_LUTQ8_ROWS_ENTRY(DecPermute)
}  // namespace slimrt::kernels::detail::vbmi

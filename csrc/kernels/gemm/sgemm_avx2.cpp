// fp32 GEMM microkernels for AVX2 + FMA (bodies in sgemm_impl.h, 8-lane ymm policy here).
//   ukernel: rows x 16 tile (rows <= kMR = 6) in 12 ymm accumulators; per k:
//            two aligned panel loads, one broadcast + two FMAs per row.
//            A packed [kc][6] or read in place (ukernel_a: rows lda apart),
//            B panel [kc][16] (see sgemm_internal.h); a panel of <= 8 live
//            columns runs the one-vector tile.
//   gemv:    one row of A times consecutive panels over the full K: groups of
//            four panels (four streams, one FMA chain per element), a lone
//            panel with four chains (k mod 4) added at the end.
// Rounding: each element is a chain of FMAs in k order (see gemv for the
// exception), then the epilogue in the documented order. The driver hands
// gemv panel ranges aligned to groups of four, so results do not depend on
// the thread count.
#include <immintrin.h>

#include "kernels/eltwise/vec_avx2.h"
#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels::detail::avx2 {
namespace {

// zero, set1, fma, add, mul, min, max from VecAvx2.
struct V : VecAvx2 {
  using Vec = __m256;
  using Mask = __m256i;  // all-ones lanes active
  static constexpr int W = 8, kMR = avx2::kMR, kNR = avx2::kNR;
  static constexpr int kPrefetchRows = 16;  // ukernel: panel rows ahead of the stream
  static Vec load(const float* p) { return _mm256_load_ps(p); }  // aligned
  static Mask mask(int64_t n) {
    int k = n <= 0 ? 0 : (n >= 8 ? 8 : static_cast<int>(n));
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, Vec x) { _mm256_storeu_ps(p, x); }
  static Vec maskload(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void maskstore(float* p, Mask m, Vec x) { _mm256_maskstore_ps(p, m, x); }
  static Vec leaky(Vec x, Vec alpha) {
    return _mm256_blendv_ps(x, _mm256_mul_ps(x, alpha), _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
  }
};

}  // namespace

#include "kernels/gemm/sgemm_impl.h"

}  // namespace slimrt::kernels::detail::avx2

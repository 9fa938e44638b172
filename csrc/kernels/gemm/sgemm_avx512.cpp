// fp32 GEMM microkernels for AVX-512 (F only; bodies in sgemm_impl.h, 16-lane zmm policy here).
//   ukernel: rows x 32 tile (rows <= kMR = 12) held in 24 zmm accumulators;
//            per k: two aligned panel loads, one broadcast + two FMAs per row.
//            A packed [kc][12] or read in place (ukernel_a: rows lda apart),
//            B panel [kc][32] (see sgemm_internal.h); a panel of <= 16 live
//            columns runs the one-vector tile.
//   gemv:    one row of A times consecutive panels over the full K: groups of
//            four panels (four streams, one FMA chain per element), a lone
//            panel with four chains (k mod 4) added at the end.
// Rounding: each element is a chain of FMAs in k order (see gemv for the
// exception), then the epilogue in the documented order. The driver hands
// gemv panel ranges aligned to groups of four, so results do not depend on
// the thread count.
#include <immintrin.h>

// GCC 12 reports _mm512_undefined_ps() inside _mm512_max_ps/min_ps as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/eltwise/vec_avx512.h"
#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels::detail::avx512 {
namespace {

// zero, set1, fma, add, mul, min, max from VecAvx512.
struct V : VecAvx512 {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int W = 16, kMR = avx512::kMR, kNR = avx512::kNR;
  static constexpr int kPrefetchRows = 32;  // ukernel: panel rows ahead of the stream
  static Vec load(const float* p) { return _mm512_load_ps(p); }  // aligned
  static Mask mask(int64_t n) {
    return n >= 16 ? static_cast<__mmask16>(0xFFFF)
                   : (n <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << n) - 1));
  }
  static Vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, Vec x) { _mm512_storeu_ps(p, x); }
  static Vec maskload(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void maskstore(float* p, Mask m, Vec x) { _mm512_mask_storeu_ps(p, m, x); }
  static Vec leaky(Vec x, Vec alpha) {
    return _mm512_mask_mul_ps(x, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), x, alpha);
  }
};

}  // namespace

#include "kernels/gemm/sgemm_impl.h"

}  // namespace slimrt::kernels::detail::avx512

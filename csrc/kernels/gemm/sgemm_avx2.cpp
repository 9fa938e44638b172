// fp32 GEMM microkernels for AVX2 + FMA.
//   ukernel: rows x 16 tile (rows <= kMR = 6) in 12 ymm accumulators; per k:
//            two aligned panel loads, one broadcast + two FMAs per row.
//            A packed [kc][6], B panel [kc][16] (see sgemm_internal.h).
//   gemv:    one row of A times consecutive panels over the full K: groups of
//            four panels (four streams, one FMA chain per element), a lone
//            panel with four chains (k mod 4) added at the end.
// Rounding: each element is a chain of FMAs in k order (see gemv for the
// exception), then the epilogue in the documented order. The driver hands
// gemv panel ranges aligned to groups of four, so results do not depend on
// the thread count.
#include <immintrin.h>

#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels::detail::avx2 {
namespace {

constexpr int NV = kNR / 8;  // ymm vectors per tile row
constexpr int kPrefetch = 1024;  // gemv: floats ahead of the stream (4 KB)
constexpr int kPrefetchRows = 16;  // ukernel: panel rows ahead of the stream
static_assert(kNR % 8 == 0, "panel width must be a multiple of 8");

// Lane i active when i < n.
inline __m256i col_mask(int64_t n) {
  int k = n <= 0 ? 0 : (n >= 8 ? 8 : static_cast<int>(n));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline __m256 simple_act(__m256 x, Act act, __m256 alpha) {
  const __m256 zero = _mm256_setzero_ps();
  switch (act) {
    case Act::Relu: return _mm256_max_ps(x, zero);
    case Act::Relu6: return _mm256_min_ps(_mm256_max_ps(x, zero), _mm256_set1_ps(6.f));
    case Act::LeakyRelu:
      return _mm256_blendv_ps(x, _mm256_mul_ps(x, alpha), _mm256_cmp_ps(x, zero, _CMP_LT_OQ));
    case Act::HardSigmoid:
    case Act::HardSwish: {
      __m256 h = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(x, _mm256_set1_ps(3.f)), zero),
                               _mm256_set1_ps(6.f));
      h = _mm256_mul_ps(h, _mm256_set1_ps(1.f / 6.f));
      return act == Act::HardSwish ? _mm256_mul_ps(x, h) : h;
    }
    default: return x;
  }
}

template <int R>
// Always inlined: if `acc` escaped to a call, GCC would keep it in memory inside the K loop.
__attribute__((always_inline)) inline void store_tile(__m256 (&acc)[R][NV], float* c, int64_t ldc, int64_t ncols, const UkEpilogue& ep) {
  __m256i m[NV];
  for (int v = 0; v < NV; ++v) m[v] = col_mask(ncols - 8 * v);
  if (!ep.last) {
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) {
        float* p = c + r * ldc + 8 * v;
        __m256 x = acc[r][v];
        if (ep.accumulate) x = _mm256_add_ps(x, _mm256_maskload_ps(p, m[v]));
        _mm256_maskstore_ps(p, m[v], x);
      }
    return;
  }
  __m256 sc[NV], bi[NV];
  for (int v = 0; v < NV; ++v) {
    sc[v] = ep.scale ? _mm256_maskload_ps(ep.scale + 8 * v, m[v]) : _mm256_set1_ps(1.f);
    bi[v] = ep.bias ? _mm256_maskload_ps(ep.bias + 8 * v, m[v]) : _mm256_setzero_ps();
  }
  const __m256 alpha = _mm256_set1_ps(ep.alpha);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* p = c + r * ldc + 8 * v;
      __m256 x = acc[r][v];
      if (ep.accumulate) x = _mm256_add_ps(x, _mm256_maskload_ps(p, m[v]));
      if (ep.scale) x = _mm256_mul_ps(x, sc[v]);
      if (ep.bias) x = _mm256_add_ps(x, bi[v]);
      if (ep.residual) x = _mm256_add_ps(x, _mm256_maskload_ps(ep.residual + r * ep.ldr + 8 * v, m[v]));
      _mm256_maskstore_ps(p, m[v], simple_act(x, ep.act, alpha));
    }
  if (!act_is_simple(ep.act))
    for (int r = 0; r < R; ++r) f32_act_inplace(c + r * ldc, ncols, ep.act, ep.alpha);
}

template <int R>
void ukernel_rows(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t ncols,
                  const UkEpilogue& ep) {
  __m256 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_load_ps(b + 8 * v);
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchRows * kNR), _MM_HINT_T0);
    for (int r = 0; r < R; ++r) {
      __m256 av = _mm256_set1_ps(a[r]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
    a += kMR;
    b += kNR;
  }
  store_tile<R>(acc, c, ldc, ncols, ep);
}

}  // namespace

void f32_gemm_ukernel(int64_t rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
             int64_t ncols, const UkEpilogue& ep) {
  static_assert(kMR == 6, "update the row dispatch below");
  switch (rows) {
    case 1: ukernel_rows<1>(kc, a, b, c, ldc, ncols, ep); break;
    case 2: ukernel_rows<2>(kc, a, b, c, ldc, ncols, ep); break;
    case 3: ukernel_rows<3>(kc, a, b, c, ldc, ncols, ep); break;
    case 4: ukernel_rows<4>(kc, a, b, c, ldc, ncols, ep); break;
    case 5: ukernel_rows<5>(kc, a, b, c, ldc, ncols, ep); break;
    default: ukernel_rows<6>(kc, a, b, c, ldc, ncols, ep); break;
  }
}

void f32_gemv_panels(int64_t K, const float* a, const float* b, int64_t npanels, int64_t last_ncols, float* c,
          const UkEpilogue& ep, bool dram) {
  // Four panels at a time: four sequential streams, 8 independent FMA chains.
  constexpr int P = 4;
  int64_t p = 0;
  for (; p + P <= npanels; p += P) {
    const float* bp = b + p * K * kNR;
    __m256 acc[P][NV];
    for (int q = 0; q < P; ++q)
      for (int v = 0; v < NV; ++v) acc[q][v] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
      const __m256 av = _mm256_set1_ps(a[k]);
      for (int q = 0; q < P; ++q) {
        const float* bq = bp + q * K * kNR + k * kNR;
        if ((k & 3) == 0) _mm_prefetch(reinterpret_cast<const char*>(bq + kPrefetch), _MM_HINT_T0);
        for (int v = 0; v < NV; ++v) acc[q][v] = _mm256_fmadd_ps(av, _mm256_load_ps(bq + 8 * v), acc[q][v]);
      }
    }
    for (int q = 0; q < P; ++q) {
      __m256 sum[1][NV];
      for (int v = 0; v < NV; ++v) sum[0][v] = acc[q][v];
      UkEpilogue e = ep;
      const int64_t n0 = (p + q) * kNR;
      if (e.bias) e.bias += n0;
      if (e.scale) e.scale += n0;
      if (e.residual) e.residual += n0;
      store_tile<1>(sum, c + n0, 0, p + q + 1 == npanels ? last_ncols : kNR, e);
    }
  }
  for (; p < npanels; ++p) {
    const float* bp = b + p * K * kNR;
    __m256 acc[4][NV];
    for (int u = 0; u < 4; ++u)
      for (int v = 0; v < NV; ++v) acc[u][v] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      _mm_prefetch(reinterpret_cast<const char*>(bp + k * kNR + kPrefetch), _MM_HINT_T0);
      for (int u = 0; u < 4; ++u) {
        __m256 av = _mm256_set1_ps(a[k + u]);
        for (int v = 0; v < NV; ++v)
          acc[u][v] = _mm256_fmadd_ps(av, _mm256_load_ps(bp + (k + u) * kNR + 8 * v), acc[u][v]);
      }
    }
    for (; k < K; ++k) {
      __m256 av = _mm256_set1_ps(a[k]);
      for (int v = 0; v < NV; ++v)
        acc[0][v] = _mm256_fmadd_ps(av, _mm256_load_ps(bp + k * kNR + 8 * v), acc[0][v]);
    }
    __m256 sum[1][NV];
    for (int v = 0; v < NV; ++v)
      sum[0][v] = _mm256_add_ps(_mm256_add_ps(acc[0][v], acc[1][v]), _mm256_add_ps(acc[2][v], acc[3][v]));
    UkEpilogue e = ep;
    if (e.bias) e.bias += p * kNR;
    if (e.scale) e.scale += p * kNR;
    if (e.residual) e.residual += p * kNR;
    store_tile<1>(sum, c + p * kNR, 0, p + 1 == npanels ? last_ncols : kNR, e);
  }
}

// 4 rows x 4 k at a time through a 4x4 register transpose; leftover rows/k one by one.
void f32_pack_rows(const float* const* src, int rows, int64_t len, float* dst, int mr) {
  int r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float *s0 = src[r], *s1 = src[r + 1], *s2 = src[r + 2], *s3 = src[r + 3];
    float* d = dst + r;
    int64_t k = 0;
    for (; k + 4 <= len; k += 4) {
      __m128 a = _mm_loadu_ps(s0 + k), b = _mm_loadu_ps(s1 + k), c = _mm_loadu_ps(s2 + k), e = _mm_loadu_ps(s3 + k);
      __m128 t0 = _mm_unpacklo_ps(a, b), t1 = _mm_unpacklo_ps(c, e);
      __m128 t2 = _mm_unpackhi_ps(a, b), t3 = _mm_unpackhi_ps(c, e);
      _mm_storeu_ps(d + (k + 0) * mr, _mm_movelh_ps(t0, t1));
      _mm_storeu_ps(d + (k + 1) * mr, _mm_movehl_ps(t1, t0));
      _mm_storeu_ps(d + (k + 2) * mr, _mm_movelh_ps(t2, t3));
      _mm_storeu_ps(d + (k + 3) * mr, _mm_movehl_ps(t3, t2));
    }
    for (; k < len; ++k) {
      d[k * mr + 0] = s0[k];
      d[k * mr + 1] = s1[k];
      d[k * mr + 2] = s2[k];
      d[k * mr + 3] = s3[k];
    }
  }
  for (; r < rows; ++r) {
    const float* s0 = src[r];
    for (int64_t k = 0; k < len; ++k) dst[k * mr + r] = s0[k];
  }
}

}  // namespace slimrt::kernels::detail::avx2

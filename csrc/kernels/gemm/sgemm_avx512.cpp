// fp32 GEMM microkernels for AVX-512 (F only).
//   ukernel: rows x 32 tile (rows <= kMR = 12) held in 24 zmm accumulators;
//            per k: two aligned panel loads, one broadcast + two FMAs per row.
//            A packed [kc][12], B panel [kc][32] (see sgemm_internal.h).
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

#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels::detail::avx512 {
namespace {

constexpr int NV = kNR / 16;  // zmm vectors per tile row
constexpr int kPrefetch = 1024;  // gemv: floats ahead of the stream (4 KB)
constexpr int kPrefetchStream = 4096;  // gemv over DRAM-resident panels (16 KB)
constexpr int kPrefetchRows = 32;  // ukernel: panel rows ahead of the stream
static_assert(kNR % 16 == 0, "panel width must be a multiple of 16");

inline __mmask16 col_mask(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF)
                 : (n <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << n) - 1));
}

inline __m512 simple_act(__m512 x, Act act, __m512 alpha) {
  const __m512 zero = _mm512_setzero_ps();
  switch (act) {
    case Act::Relu: return _mm512_max_ps(x, zero);
    case Act::Relu6: return _mm512_min_ps(_mm512_max_ps(x, zero), _mm512_set1_ps(6.f));
    case Act::LeakyRelu:
      return _mm512_mask_mul_ps(x, _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ), x, alpha);
    case Act::HardSigmoid:
    case Act::HardSwish: {
      __m512 h = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(x, _mm512_set1_ps(3.f)), zero),
                               _mm512_set1_ps(6.f));
      h = _mm512_mul_ps(h, _mm512_set1_ps(1.f / 6.f));
      return act == Act::HardSwish ? _mm512_mul_ps(x, h) : h;
    }
    default: return x;
  }
}

// Writes an R x kNR accumulator tile to C (first ncols columns), per UkEpilogue.
template <int R>
// Always inlined: if `acc` escaped to a call, GCC would keep it in memory inside the K loop.
__attribute__((always_inline)) inline void store_tile(__m512 (&acc)[R][NV], float* c, int64_t ldc, int64_t ncols, const UkEpilogue& ep) {
  __mmask16 m[NV];
  for (int v = 0; v < NV; ++v) m[v] = col_mask(ncols - 16 * v);
  if (!ep.last) {
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) {
        float* p = c + r * ldc + 16 * v;
        __m512 x = acc[r][v];
        if (ep.accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m[v], p));
        _mm512_mask_storeu_ps(p, m[v], x);
      }
    return;
  }
  __m512 sc[NV], bi[NV];
  for (int v = 0; v < NV; ++v) {
    sc[v] = ep.scale ? _mm512_maskz_loadu_ps(m[v], ep.scale + 16 * v) : _mm512_set1_ps(1.f);
    bi[v] = ep.bias ? _mm512_maskz_loadu_ps(m[v], ep.bias + 16 * v) : _mm512_setzero_ps();
  }
  const __m512 alpha = _mm512_set1_ps(ep.alpha);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* p = c + r * ldc + 16 * v;
      __m512 x = acc[r][v];
      if (ep.accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m[v], p));
      if (ep.scale) x = _mm512_mul_ps(x, sc[v]);
      if (ep.bias) x = _mm512_add_ps(x, bi[v]);
      if (ep.residual) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m[v], ep.residual + r * ep.ldr + 16 * v));
      _mm512_mask_storeu_ps(p, m[v], simple_act(x, ep.act, alpha));
    }
  if (!act_is_simple(ep.act))
    for (int r = 0; r < R; ++r) f32_act_inplace(c + r * ldc, ncols, ep.act, ep.alpha);
}

template <int R>
void ukernel_rows(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t ncols,
                  const UkEpilogue& ep) {
  __m512 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchRows * kNR), _MM_HINT_T0);
    for (int r = 0; r < R; ++r) {
      __m512 av = _mm512_set1_ps(a[r]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
    a += kMR;
    b += kNR;
  }
  store_tile<R>(acc, c, ldc, ncols, ep);
}

}  // namespace

void f32_gemm_ukernel(int64_t rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
             int64_t ncols, const UkEpilogue& ep) {
  static_assert(kMR == 12, "update the row dispatch below");
  switch (rows) {
    case 1: ukernel_rows<1>(kc, a, b, c, ldc, ncols, ep); break;
    case 2: ukernel_rows<2>(kc, a, b, c, ldc, ncols, ep); break;
    case 3: ukernel_rows<3>(kc, a, b, c, ldc, ncols, ep); break;
    case 4: ukernel_rows<4>(kc, a, b, c, ldc, ncols, ep); break;
    case 5: ukernel_rows<5>(kc, a, b, c, ldc, ncols, ep); break;
    case 6: ukernel_rows<6>(kc, a, b, c, ldc, ncols, ep); break;
    case 7: ukernel_rows<7>(kc, a, b, c, ldc, ncols, ep); break;
    case 8: ukernel_rows<8>(kc, a, b, c, ldc, ncols, ep); break;
    case 9: ukernel_rows<9>(kc, a, b, c, ldc, ncols, ep); break;
    case 10: ukernel_rows<10>(kc, a, b, c, ldc, ncols, ep); break;
    case 11: ukernel_rows<11>(kc, a, b, c, ldc, ncols, ep); break;
    default: ukernel_rows<12>(kc, a, b, c, ldc, ncols, ep); break;
  }
}

void f32_gemv_panels(int64_t K, const float* a, const float* b, int64_t npanels, int64_t last_ncols, float* c,
          const UkEpilogue& ep, bool dram) {
  // Four panels at a time: four sequential streams, 8 independent FMA chains. A matrix that
  // streams from DRAM (dram, see kGemvDramBytes): prefetch both lines of every row 16 KB ahead;
  // cache-resident ones keep the light prefetch.
  constexpr int P = 4;
  const bool stream = dram;
  int64_t p = 0;
  for (; p + P <= npanels; p += P) {
    const float* bp = b + p * K * kNR;
    __m512 acc[P][NV];
    for (int q = 0; q < P; ++q)
      for (int v = 0; v < NV; ++v) acc[q][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
      const __m512 av = _mm512_set1_ps(a[k]);
      for (int q = 0; q < P; ++q) {
        const float* bq = bp + q * K * kNR + k * kNR;
        if (stream) {  // both lines of this row, far ahead: DRAM latency x bandwidth needs it
          _mm_prefetch(reinterpret_cast<const char*>(bq + kPrefetchStream), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(bq + kPrefetchStream + 16), _MM_HINT_T0);
        } else if ((k & 1) == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(bq + kPrefetch), _MM_HINT_T0);
        }
        for (int v = 0; v < NV; ++v) acc[q][v] = _mm512_fmadd_ps(av, _mm512_load_ps(bq + 16 * v), acc[q][v]);
      }
    }
    for (int q = 0; q < P; ++q) {
      __m512 sum[1][NV];
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
    __m512 acc[4][NV];
    for (int u = 0; u < 4; ++u)
      for (int v = 0; v < NV; ++v) acc[u][v] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      _mm_prefetch(reinterpret_cast<const char*>(bp + k * kNR + kPrefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(bp + k * kNR + kPrefetch + 64), _MM_HINT_T0);
      for (int u = 0; u < 4; ++u) {
        __m512 av = _mm512_set1_ps(a[k + u]);
        for (int v = 0; v < NV; ++v)
          acc[u][v] = _mm512_fmadd_ps(av, _mm512_load_ps(bp + (k + u) * kNR + 16 * v), acc[u][v]);
      }
    }
    for (; k < K; ++k) {
      __m512 av = _mm512_set1_ps(a[k]);
      for (int v = 0; v < NV; ++v)
        acc[0][v] = _mm512_fmadd_ps(av, _mm512_load_ps(bp + k * kNR + 16 * v), acc[0][v]);
    }
    __m512 sum[1][NV];
    for (int v = 0; v < NV; ++v)
      sum[0][v] = _mm512_add_ps(_mm512_add_ps(acc[0][v], acc[1][v]), _mm512_add_ps(acc[2][v], acc[3][v]));
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

}  // namespace slimrt::kernels::detail::avx512

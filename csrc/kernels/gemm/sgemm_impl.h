// The fp32 GEMM microkernel, GEMV and A-packing bodies, written once for every vector width.
// Included by sgemm_<isa>.cpp inside its ISA namespace, after that file's policy struct V
// (no include guard, no namespace-scope templates: each ISA file compiles its own copy in an
// anonymous namespace, so nothing built with AVX-512 flags can serve an AVX2 caller).
//
// V must provide (all static inline):
//   types   Vec (float vector), Mask (lane mask for partial columns)
//   consts  W (lanes), kMR, kNR (tile, from sgemm_internal.h), kPrefetchRows (ukernel: panel rows
//           ahead of the stream)
//   ops     zero(), set1(float), load(p) (64-byte aligned), fma(a, b, c) = a*b + c, add, mul,
//           min, max, mask(n) (lanes i < n active), maskload(p, m) (inactive lanes 0),
//           maskstore(p, m, x), loadu(p), storeu(p, x) (unaligned), leaky(x, alpha) (x < 0 ? x*alpha : x)
// Tile: rows x kNR in rows * NV vector accumulators, NV = kNR / W; A packed [kc][kMR], B panel
// [kc][kNR] (see sgemm_internal.h). Rounding as stated in each sgemm_<isa>.cpp header.
namespace {

constexpr int NV = V::kNR / V::W;    // vectors per tile row
constexpr int kPrefetch = 1024;  // gemv's lone panel: floats ahead of its one stream (4 KB)
static_assert(V::kNR % V::W == 0, "panel width must be a multiple of the vector width");
static_assert(V::kNR % 16 == 0, "gemv prefetches one 64-byte line per 4 panel rows of 16 floats");

inline void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }

inline typename V::Vec simple_act(typename V::Vec x, Act act, typename V::Vec alpha) {
  const auto zero = V::zero();
  switch (act) {
    case Act::Relu: return V::max(x, zero);
    case Act::Relu6: return V::min(V::max(x, zero), V::set1(6.f));
    case Act::LeakyRelu: return V::leaky(x, alpha);
    case Act::HardSigmoid:
    case Act::HardSwish: {
      auto h = V::min(V::max(V::add(x, V::set1(3.f)), zero), V::set1(6.f));
      h = V::mul(h, V::set1(1.f / 6.f));
      return act == Act::HardSwish ? V::mul(x, h) : h;
    }
    default: return x;
  }
}

// Writes an R x (NA vectors) accumulator tile to C (first ncols columns), per UkEpilogue.
template <int R, int NA>
// Always inlined: if `acc` escaped to a call, GCC would keep it in memory inside the K loop.
__attribute__((always_inline)) inline void store_tile(typename V::Vec (&acc)[R][NA], float* c, int64_t ldc,
                                                      int64_t ncols, const UkEpilogue& ep) {
  typename V::Mask m[NA];
  #pragma GCC unroll 16
  for (int v = 0; v < NA; ++v) m[v] = V::mask(ncols - V::W * v);
  // A whole tile uses plain loads and stores: AVX2's vpmaskmov costs far more on AMD (SLIMRT_ISA=avx2,
  // Zen 4, 1 thread, 1344 x 16 x 96 in cache: 120 -> 69 us); AVX-512 masked stores measured no slower.
  const bool whole = ncols >= NA * V::W;
  auto ld = [&](const float* p, int v) { return whole ? V::loadu(p) : V::maskload(p, m[v]); };
  auto st = [&](float* p, int v, typename V::Vec x) {
    if (whole) V::storeu(p, x);
    else V::maskstore(p, m[v], x);
  };
  if (!ep.last) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
      #pragma GCC unroll 16
      for (int v = 0; v < NA; ++v) {
        float* p = c + r * ldc + V::W * v;
        auto x = acc[r][v];
        if (ep.accumulate) x = V::add(x, ld(p, v));
        st(p, v, x);
      }
    return;
  }
  typename V::Vec sc[NA], bi[NA];
  #pragma GCC unroll 16
  for (int v = 0; v < NA; ++v) {
    sc[v] = ep.scale ? V::maskload(ep.scale + V::W * v, m[v]) : V::set1(1.f);
    bi[v] = ep.bias ? V::maskload(ep.bias + V::W * v, m[v]) : V::zero();
  }
  const auto alpha = V::set1(ep.alpha);
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 16
    for (int v = 0; v < NA; ++v) {
      float* p = c + r * ldc + V::W * v;
      auto x = acc[r][v];
      if (ep.accumulate) x = V::add(x, ld(p, v));
      if (ep.scale) x = V::mul(x, sc[v]);
      if (ep.bias) x = V::add(x, bi[v]);
      if (ep.residual) x = V::add(x, ld(ep.residual + r * ep.ldr + V::W * v, v));
      st(p, v, simple_act(x, ep.act, alpha));
    }
  if (!act_is_simple(ep.act))
    for (int r = 0; r < R; ++r) f32_act_inplace(c + r * ldc, ncols, ep.act, ep.alpha);
}

// R rows x NA vectors of the panel (NA < NV: a last panel of <= W * NA columns skips the zero
// lanes' FMAs). DIRECT: A is read in place, row r at a + r * lda (rows in groups of three off one
// pointer: [p], [p + lda], [p + 2 lda] address as base + index * 4 / 8); otherwise A is packed
// [kc][kMR]. Same FMA order either way, so the two give identical results.
template <int R, int NA, bool DIRECT>
void ukernel_rows(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, int64_t ncols,
                  const UkEpilogue& ep) {
  constexpr int G = (R + 2) / 3;
  typename V::Vec acc[R][NA];
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 16
    for (int v = 0; v < NA; ++v) acc[r][v] = V::zero();
  const float* ar[G];
  #pragma GCC unroll 16
  for (int g = 0; g < G; ++g) ar[g] = a + (DIRECT ? 3 * g * lda : 0);
  #pragma GCC unroll 16
  // Every line of the tile's C rows (an AVX-512 row of 32 floats is two), fetched while the K loop runs.
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 4
    for (int l = 0; l < (NA * V::W + 15) / 16; ++l) prefetch(c + r * ldc + 16 * l);
  // Likewise the residual rows the epilogue adds: a residual block's input, often from DRAM, whose
  // unfetched lines stalled the epilogue (4096 x 128 x 128 with a residual from L3: 74 GFLOP/s against
  // 105 without one; 91-99 with this prefetch and the driver's one tile ahead).
  if (ep.last && ep.residual)
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
      #pragma GCC unroll 4
      for (int l = 0; l < (NA * V::W + 15) / 16; ++l) prefetch(ep.residual + r * ep.ldr + 16 * l);
  #pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    typename V::Vec bv[NA];
    #pragma GCC unroll 16
    for (int v = 0; v < NA; ++v) bv[v] = V::load(b + V::W * v);
    // Every 64-byte line of the panel row kPrefetchRows ahead (an AVX-512 row is two lines; fetching
    // only the first left cold weights, read from L3, at 87 GF/s against 105 for 49 x 960 x 160).
    #pragma GCC unroll 4
    for (int l = 0; l < V::kNR / 16; ++l) prefetch(b + V::kPrefetchRows * V::kNR + 16 * l);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      auto av = DIRECT ? V::set1(ar[r / 3][(r % 3) * lda]) : V::set1(a[r]);
      #pragma GCC unroll 16
      for (int v = 0; v < NA; ++v) acc[r][v] = V::fma(av, bv[v], acc[r][v]);
    }
    if (DIRECT) {
      #pragma GCC unroll 16
      for (int g = 0; g < G; ++g) ar[g] += 1;
    } else {
      a += V::kMR;
    }
    b += V::kNR;
  }
  store_tile<R, NA>(acc, c, ldc, ncols, ep);
}

// rows 1 .. kMR - 1 get their own instance, anything else the full tile; a panel of <= W columns
// (the last one of a ragged N) the one-vector instance.
template <bool DIRECT, int R = 1>
void ukernel_dispatch(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                      int64_t ldc, int64_t ncols, const UkEpilogue& ep) {
  if constexpr (R < V::kMR) {
    if (rows != R) return ukernel_dispatch<DIRECT, R + 1>(rows, kc, a, lda, b, c, ldc, ncols, ep);
  }
  if (NV > 1 && ncols <= V::W) return ukernel_rows<R, 1, DIRECT>(kc, a, lda, b, c, ldc, ncols, ep);
  ukernel_rows<R, NV, DIRECT>(kc, a, lda, b, c, ldc, ncols, ep);
}

// Tile epilogue pointers moved to column n0.
inline UkEpilogue epilogue_at(const UkEpilogue& ep, int64_t n0) {
  UkEpilogue e = ep;
  if (e.bias) e.bias += n0;
  if (e.scale) e.scale += n0;
  if (e.residual) e.residual += n0;
  return e;
}

void gemv_body(int64_t K, const float* a, const float* b, int64_t npanels, int64_t last_ncols, float* c,
               const UkEpilogue& ep) {
  // Four panels at a time: four sequential streams, 4 * NV independent FMA chains. Four streams
  // keep enough lines in flight from L2, L3 and DRAM without software prefetch, which slowed
  // every level: alternating processes, 1 thread 1024^2 49.0 -> 46.4 us, 4096x512 95.6 -> 90.7,
  // 2 threads 4096x1024 123 -> 101; from DRAM (both lines of every row 16 KB ahead) 1 thread
  // 4096^2 / 8192x4096 GF/s 9.9 / 10.6 -> 13.2 / 12.6 and 13.9 / 12.3 -> 14.6 / 14.4 in two
  // 6- and 12-round A/Bs (with the prefetch -> without); 2 threads 4096^2 2.02 -> 1.76 ms.
  constexpr int P = 4;
  int64_t p = 0;
  for (; p + P <= npanels; p += P) {
    const float* bp = b + p * K * V::kNR;
    typename V::Vec acc[P][NV];
    for (int q = 0; q < P; ++q)
      for (int v = 0; v < NV; ++v) acc[q][v] = V::zero();
    for (int64_t k = 0; k < K; ++k) {
      const auto av = V::set1(a[k]);
      for (int q = 0; q < P; ++q) {
        const float* bq = bp + q * K * V::kNR + k * V::kNR;
        for (int v = 0; v < NV; ++v) acc[q][v] = V::fma(av, V::load(bq + V::W * v), acc[q][v]);
      }
    }
    for (int q = 0; q < P; ++q) {
      typename V::Vec sum[1][NV];
      for (int v = 0; v < NV; ++v) sum[0][v] = acc[q][v];
      const int64_t n0 = (p + q) * V::kNR;
      store_tile<1, NV>(sum, c + n0, 0, p + q + 1 == npanels ? last_ncols : V::kNR, epilogue_at(ep, n0));
    }
  }
  // A lone panel: four chains (k mod 4), added at the end.
  for (; p < npanels; ++p) {
    const float* bp = b + p * K * V::kNR;
    typename V::Vec acc[4][NV];
    for (int u = 0; u < 4; ++u)
      for (int v = 0; v < NV; ++v) acc[u][v] = V::zero();
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      for (int l = 0; l < V::kNR / 16; ++l) prefetch(bp + k * V::kNR + kPrefetch + 64 * l);
      for (int u = 0; u < 4; ++u) {
        auto av = V::set1(a[k + u]);
        for (int v = 0; v < NV; ++v)
          acc[u][v] = V::fma(av, V::load(bp + (k + u) * V::kNR + V::W * v), acc[u][v]);
      }
    }
    for (; k < K; ++k) {
      auto av = V::set1(a[k]);
      for (int v = 0; v < NV; ++v) acc[0][v] = V::fma(av, V::load(bp + k * V::kNR + V::W * v), acc[0][v]);
    }
    typename V::Vec sum[1][NV];
    for (int v = 0; v < NV; ++v) sum[0][v] = V::add(V::add(acc[0][v], acc[1][v]), V::add(acc[2][v], acc[3][v]));
    store_tile<1, NV>(sum, c + p * V::kNR, 0, p + 1 == npanels ? last_ncols : V::kNR, epilogue_at(ep, p * V::kNR));
  }
}

}  // namespace

void f32_gemm_ukernel(int64_t rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                      int64_t ncols, const UkEpilogue& ep) {
  ukernel_dispatch<false>(rows, kc, a, 0, b, c, ldc, ncols, ep);
}

void f32_gemm_ukernel_a(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                        int64_t ldc, int64_t ncols, const UkEpilogue& ep) {
  ukernel_dispatch<true>(rows, kc, a, lda, b, c, ldc, ncols, ep);
}

void f32_gemv_panels(int64_t K, const float* a, const float* b, int64_t npanels, int64_t last_ncols, float* c,
                     const UkEpilogue& ep) {
  gemv_body(K, a, b, npanels, last_ncols, c, ep);
}

// 4 rows x 4 k at a time through a 4x4 SSE register transpose; leftover rows/k one by one.
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

// AVX2 LUT-GEMM kernel (layout: lutgemm.h, 8-dword blocks).
//   lut_rows: 2 weight rows x P <= 4 activation rows per call, over all of K;
//             per chunk a shift by sb exposes the next 8 indices; sb = 4 decodes
//             with two 8-entry vpermps and a blend on index bit 3, sb = 1, 2 with
//             one vpermps (the table is replicated), sb = 8 with vgatherdps.
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/lutgemm/lutgemm_internal.h"

namespace slimrt::kernels::detail::avx2 {
namespace {

template <int SB>
inline __m256 decode(__m256i v, __m256 lo, __m256 hi, const float* tp) {
  if constexpr (SB <= 2) {
    return _mm256_permutevar8x32_ps(lo, v);
  } else if constexpr (SB == 4) {
    const __m256 a = _mm256_permutevar8x32_ps(lo, v), b = _mm256_permutevar8x32_ps(hi, v);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(v, 28)));
  } else {
    return _mm256_i32gather_ps(tp, _mm256_and_si256(v, _mm256_set1_epi32(0xFF)), 4);
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// R weight rows x P activation rows over the whole (padded) K.
template <int SB, int R, int P>
void rows_kernel(const LutView& w, int64_t n, const float* xs, int64_t ldx, float* out, int64_t ldo) {
  constexpr int S = 32 / SB;
  const int64_t nb = w.row_bytes / 32;
  const uint8_t* p[R];
  const float* tp[R];
  __m256 lo[R], hi[R], acc[R][P];
  for (int r = 0; r < R; ++r) {
    p[r] = w.idx + (n + r) * w.row_bytes;
    tp[r] = w.lut + (w.per_row ? (n + r) * w.table : 0);
    lo[r] = SB <= 4 ? _mm256_loadu_ps(tp[r]) : _mm256_setzero_ps();
    hi[r] = SB <= 4 ? _mm256_loadu_ps(tp[r] + 8) : _mm256_setzero_ps();
    for (int q = 0; q < P; ++q) acc[r][q] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m256i d[R];
    for (int r = 0; r < R; ++r) d[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[r] + b * 32));
    const float* xb = xs + b * (8 * S);
#pragma GCC unroll 32
    for (int j = 0; j < S; ++j) {
      for (int r = 0; r < R; ++r) {
        const __m256 wv = decode<SB>(d[r], lo[r], hi[r], tp[r]);
        for (int q = 0; q < P; ++q)
          acc[r][q] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xb + q * ldx + 8 * j), acc[r][q]);
        d[r] = _mm256_srli_epi32(d[r], SB);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < P; ++q) out[q * ldo + r] = hsum(acc[r][q]);
}

template <int SB, int P>
void rows_sb(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, float* out, int64_t ldo) {
  for (int64_t n = n0; n < n1; n += 2) rows_kernel<SB, 2, P>(w, n, xs, ldx, out + (n - n0), ldo);
}

template <int SB>
void rows_p(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, int p, float* out,
            int64_t ldo) {
  switch (p) {
    case 1: rows_sb<SB, 1>(w, n0, n1, xs, ldx, out, ldo); break;
    case 2: rows_sb<SB, 2>(w, n0, n1, xs, ldx, out, ldo); break;
    case 3: rows_sb<SB, 3>(w, n0, n1, xs, ldx, out, ldo); break;
    default: rows_sb<SB, 4>(w, n0, n1, xs, ldx, out, ldo); break;
  }
}

}  // namespace

void lut_rows(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, int p, float* out,
              int64_t ldo) {
  switch (w.sb) {
    case 1: rows_p<1>(w, n0, n1, xs, ldx, p, out, ldo); break;
    case 2: rows_p<2>(w, n0, n1, xs, ldx, p, out, ldo); break;
    case 4: rows_p<4>(w, n0, n1, xs, ldx, p, out, ldo); break;
    default: rows_p<8>(w, n0, n1, xs, ldx, p, out, ldo); break;
  }
}

}  // namespace slimrt::kernels::detail::avx2

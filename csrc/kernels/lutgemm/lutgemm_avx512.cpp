// AVX-512 LUT-GEMM kernel (layout: lutgemm.h, 16-dword blocks).
//   lut_rows: 4 weight rows x P <= 4 activation rows per call, over all of K.
//             Per weight row and block: one 64-byte load of 16 dwords; per chunk
//             a shift by sb exposes the next 16 indices, vpermps (sb <= 4: the
//             16-entry table in one zmm) or vgatherdps (sb = 8) decodes them, and
//             the decoded vector feeds P FMAs (one accumulator per row pair).
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/lutgemm/lutgemm_internal.h"

namespace slimrt::kernels::detail::avx512 {
namespace {

template <int SB>
inline __m512 decode(__m512i v, __m512 table, const float* tp) {
  if constexpr (SB <= 4) {
    return _mm512_permutexvar_ps(v, table);  // uses the low 4 bits of each lane
  } else {
    return _mm512_i32gather_ps(_mm512_and_si512(v, _mm512_set1_epi32(0xFF)), tp, 4);
  }
}

// R weight rows x P activation rows over the whole (padded) K. Each decoded
// 16-weight vector feeds P FMAs, each x vector R FMAs.
template <int SB, int R, int P>
void rows_kernel(const LutView& w, int64_t n, const float* xs, int64_t ldx, float* out, int64_t ldo) {
  constexpr int S = 32 / SB;
  const int64_t nb = w.row_bytes / 64;
  const uint8_t* p[R];
  const float* tp[R];
  __m512 table[R];
  __m512 acc[R][P];
  for (int r = 0; r < R; ++r) {
    p[r] = w.idx + (n + r) * w.row_bytes;
    tp[r] = w.lut + (w.per_row ? (n + r) * w.table : 0);
    table[r] = SB <= 4 ? _mm512_loadu_ps(tp[r]) : _mm512_setzero_ps();
    for (int q = 0; q < P; ++q) acc[r][q] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m512i d[R];
    for (int r = 0; r < R; ++r) d[r] = _mm512_loadu_si512(p[r] + b * 64);
    const float* xb = xs + b * (16 * S);
#pragma GCC unroll 32
    for (int j = 0; j < S; ++j) {
      __m512 xv[P];
      for (int q = 0; q < P; ++q) xv[q] = _mm512_loadu_ps(xb + q * ldx + 16 * j);
      for (int r = 0; r < R; ++r) {
        const __m512 wv = decode<SB>(d[r], table[r], tp[r]);
        for (int q = 0; q < P; ++q) acc[r][q] = _mm512_fmadd_ps(wv, xv[q], acc[r][q]);
        d[r] = _mm512_srli_epi32(d[r], SB);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < P; ++q) out[q * ldo + r] = _mm512_reduce_add_ps(acc[r][q]);
}

template <int SB, int P>
void rows_sb(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, float* out, int64_t ldo) {
  for (int64_t n = n0; n < n1; n += 4) rows_kernel<SB, 4, P>(w, n, xs, ldx, out + (n - n0), ldo);
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

}  // namespace slimrt::kernels::detail::avx512

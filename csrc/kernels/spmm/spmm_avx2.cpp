// AVX2 CSR kernels (same scheme as spmm_avx512.cpp with 8 lanes).
//   csr_gemv: 16 nnz per step in two accumulators, x gathered (vgatherdps ymm);
//             the ragged tail (< 8) runs scalar.
//   csr_tile: per nnz one broadcast of v[j] and mb/8 FMAs with the xt row col[j].
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/spmm/spmm_internal.h"

namespace slimrt::kernels::detail::avx2 {
namespace {

inline __m256i load_idx(const CsrView& w, int64_t j) {
  if (w.idx16)
    return _mm256_cvtepu16_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w.indices) + j)));
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const int32_t*>(w.indices) + j));
}

inline __m256 load_val(const CsrView& w, int64_t j) {
  if (w.int8)
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(w.values) + j))));
  return _mm256_loadu_ps(static_cast<const float*>(w.values) + j);
}

inline int64_t col_at(const CsrView& w, int64_t j) {
  return w.idx16 ? static_cast<const uint16_t*>(w.indices)[j] : static_cast<const int32_t*>(w.indices)[j];
}

inline float val_at(const CsrView& w, int64_t j) {
  return w.int8 ? static_cast<float>(static_cast<const int8_t*>(w.values)[j]) : static_cast<const float*>(w.values)[j];
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int NV, int U>
void tile_rows(const CsrView& w, int64_t n0, int64_t n1, const float* xt, float* acc) {
  constexpr int MB = 8 * NV;
  for (int64_t n = n0; n < n1; ++n) {
    __m256 a[U][NV];
    for (int u = 0; u < U; ++u)
      for (int q = 0; q < NV; ++q) a[u][q] = _mm256_setzero_ps();
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    for (; j + U <= e; j += U) {
      for (int u = 0; u < U; ++u) {
        const __m256 v = _mm256_set1_ps(val_at(w, j + u));
        const float* xp = xt + col_at(w, j + u) * MB;
        for (int q = 0; q < NV; ++q) a[u][q] = _mm256_fmadd_ps(v, _mm256_load_ps(xp + 8 * q), a[u][q]);
      }
    }
    for (; j < e; ++j) {
      const __m256 v = _mm256_set1_ps(val_at(w, j));
      const float* xp = xt + col_at(w, j) * MB;
      for (int q = 0; q < NV; ++q) a[0][q] = _mm256_fmadd_ps(v, _mm256_load_ps(xp + 8 * q), a[0][q]);
    }
    float* o = acc + (n - n0) * MB;
    for (int q = 0; q < NV; ++q) {
      __m256 s = a[0][q];
      for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, a[u][q]);
      _mm256_storeu_ps(o + 8 * q, s);
    }
  }
}

}  // namespace

void csr_gemv(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; j + 16 <= e; j += 16) {
      const __m256 x0 = _mm256_i32gather_ps(x, load_idx(w, j), 4);
      const __m256 x1 = _mm256_i32gather_ps(x, load_idx(w, j + 8), 4);
      a0 = _mm256_fmadd_ps(load_val(w, j), x0, a0);
      a1 = _mm256_fmadd_ps(load_val(w, j + 8), x1, a1);
    }
    if (j + 8 <= e) {
      a0 = _mm256_fmadd_ps(load_val(w, j), _mm256_i32gather_ps(x, load_idx(w, j), 4), a0);
      j += 8;
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; j < e; ++j) s += val_at(w, j) * x[col_at(w, j)];
    acc[n - n0] = s;
  }
}

void csr_tile(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc) {
  switch (mb) {
    case 8: tile_rows<1, 4>(w, n0, n1, xt, acc); break;
    case 16: tile_rows<2, 4>(w, n0, n1, xt, acc); break;
    case 24: tile_rows<3, 2>(w, n0, n1, xt, acc); break;
    default: tile_rows<4, 2>(w, n0, n1, xt, acc); break;
  }
}

}  // namespace slimrt::kernels::detail::avx2

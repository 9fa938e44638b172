// AVX-512 CSR kernels.
//   csr_gemv: per CSR row, 32 nnz per step in two accumulators: column indices
//             widened to int32 (vpmovzxwd for uint16), x gathered (vgatherdps),
//             values widened (int8 -> f32) and FMA'd; the ragged tail uses masks.
//   csr_tile: per CSR row, each nnz broadcasts v[j] and FMAs it with the xt row
//             col[j] (mb = 16 * NV floats); U independent accumulator sets hide
//             the FMA latency when NV is small.
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/spmm/spmm_internal.h"

namespace slimrt::kernels::detail::avx512 {
namespace {

inline __m512i load_idx(const CsrView& w, int64_t j) {
  if (w.idx16)
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(
        static_cast<const uint16_t*>(w.indices) + j)));
  return _mm512_loadu_si512(static_cast<const int32_t*>(w.indices) + j);
}

inline __m512 load_val(const CsrView& w, int64_t j) {
  if (w.int8)
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(w.values) + j))));
  return _mm512_loadu_ps(static_cast<const float*>(w.values) + j);
}

inline int64_t col_at(const CsrView& w, int64_t j) {
  return w.idx16 ? static_cast<const uint16_t*>(w.indices)[j] : static_cast<const int32_t*>(w.indices)[j];
}

inline float val_at(const CsrView& w, int64_t j) {
  return w.int8 ? static_cast<float>(static_cast<const int8_t*>(w.values)[j]) : static_cast<const float*>(w.values)[j];
}

template <int NV, int U>
void tile_rows(const CsrView& w, int64_t n0, int64_t n1, const float* xt, float* acc) {
  constexpr int MB = 16 * NV;
  for (int64_t n = n0; n < n1; ++n) {
    __m512 a[U][NV];
    for (int u = 0; u < U; ++u)
      for (int q = 0; q < NV; ++q) a[u][q] = _mm512_setzero_ps();
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    for (; j + U <= e; j += U) {
      for (int u = 0; u < U; ++u) {
        const __m512 v = _mm512_set1_ps(val_at(w, j + u));
        const float* xp = xt + col_at(w, j + u) * MB;
        for (int q = 0; q < NV; ++q) a[u][q] = _mm512_fmadd_ps(v, _mm512_load_ps(xp + 16 * q), a[u][q]);
      }
    }
    for (; j < e; ++j) {
      const __m512 v = _mm512_set1_ps(val_at(w, j));
      const float* xp = xt + col_at(w, j) * MB;
      for (int q = 0; q < NV; ++q) a[0][q] = _mm512_fmadd_ps(v, _mm512_load_ps(xp + 16 * q), a[0][q]);
    }
    float* o = acc + (n - n0) * MB;
    for (int q = 0; q < NV; ++q) {
      __m512 s = a[0][q];
      for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, a[u][q]);
      _mm512_storeu_ps(o + 16 * q, s);
    }
  }
}

}  // namespace

void csr_gemv(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; j + 32 <= e; j += 32) {
      const __m512 x0 = _mm512_i32gather_ps(load_idx(w, j), x, 4);
      const __m512 x1 = _mm512_i32gather_ps(load_idx(w, j + 16), x, 4);
      a0 = _mm512_fmadd_ps(load_val(w, j), x0, a0);
      a1 = _mm512_fmadd_ps(load_val(w, j + 16), x1, a1);
    }
    for (; j < e; j += 16) {
      const int64_t r = e - j;
      const __mmask16 m = r >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << r) - 1);
      // indices/values are padded, so the full loads stay inside the buffers; the
      // mask keeps lanes past the row out of the gather and the sum.
      const __m512i idx = _mm512_maskz_mov_epi32(m, load_idx(w, j));
      const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x, 4);
      a0 = _mm512_fmadd_ps(_mm512_maskz_mov_ps(m, load_val(w, j)), xv, a0);
    }
    acc[n - n0] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  }
}

void csr_tile(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc) {
  switch (mb) {
    case 16: tile_rows<1, 4>(w, n0, n1, xt, acc); break;
    case 32: tile_rows<2, 4>(w, n0, n1, xt, acc); break;
    case 48: tile_rows<3, 2>(w, n0, n1, xt, acc); break;
    default: tile_rows<4, 2>(w, n0, n1, xt, acc); break;
  }
}

}  // namespace slimrt::kernels::detail::avx512

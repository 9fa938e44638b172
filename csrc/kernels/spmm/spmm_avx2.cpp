// AVX2 CSR kernels (same scheme as spmm_avx512.cpp with 8 lanes).
//   csr_gemv: 16 nnz per step in two accumulators, x[col] assembled from scalar
//             loads (faster than vgatherdps on Zen 4); the tail uses a lane mask.
//   csr_tile: per nnz one broadcast of v[j] and mb/8 FMAs with the xt row col[j].
//   sell_gemv: the sliced-ELL batch-1 layout (CsrSell in spmm.h) with 8 rows per slice
//             and disjoint 16-column x windows in two registers: a step is 8 u8 columns ->
//             two vpermps and a blend on column bit 3, 8 values, one FMA; up to 2
//             activation rows share each step's loads (16 ymm registers).
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/spmm/spmm_internal.h"

namespace slimrt::kernels::detail::avx2 {
namespace {

inline int64_t col_at(const CsrView& w, int64_t j) {
  return w.idx16 ? static_cast<const uint16_t*>(w.indices)[j] : static_cast<const int32_t*>(w.indices)[j];
}

enum ValueKind { kF32, kI8, kCodes, kCodesPad };  // kCodesPad: sell only, padding marked in the index

// Value j of a row whose code table starts at `trow` (codes only).
template <int VK>
inline float val_at(const CsrView& w, const float* trow, int64_t j) {
  if constexpr (VK == kCodes) return trow[static_cast<const uint8_t*>(w.values)[j]];
  else if constexpr (VK == kI8) return static_cast<float>(static_cast<const int8_t*>(w.values)[j]);
  else return static_cast<const float*>(w.values)[j];
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int VK, int NV, int U>
void tile_rows(const CsrView& w, int64_t n0, int64_t n1, const float* xt, float* acc) {
  constexpr int MB = 8 * NV;
  for (int64_t n = n0; n < n1; ++n) {
    const float* trow = VK == kCodes ? w.table + n * w.table_stride : nullptr;
    __m256 a[U][NV];
    for (int u = 0; u < U; ++u)
      for (int q = 0; q < NV; ++q) a[u][q] = _mm256_setzero_ps();
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    for (; j + U <= e; j += U) {
      for (int u = 0; u < U; ++u) {
        const __m256 v = _mm256_set1_ps(val_at<VK>(w, trow, j + u));
        const float* xp = xt + col_at(w, j + u) * MB;
        for (int q = 0; q < NV; ++q) a[u][q] = _mm256_fmadd_ps(v, _mm256_load_ps(xp + 8 * q), a[u][q]);
      }
    }
    for (; j < e; ++j) {
      const __m256 v = _mm256_set1_ps(val_at<VK>(w, trow, j));
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

// x[col[j .. j+7]] from scalar loads (faster than vgatherdps on Zen 4; see
// spmm_avx512.cpp's gather16). uint16 columns are read 4 at a time.
template <bool I16>
inline __m256 gather8(const void* indices, int64_t j, const float* x) {
  __m128 q[2];
  if constexpr (I16) {
    const uint16_t* c = static_cast<const uint16_t*>(indices) + j;
    for (int t = 0; t < 2; ++t) {
      uint64_t v;
      std::memcpy(&v, c + 4 * t, 8);
      q[t] = _mm_set_ps(x[v >> 48], x[(v >> 32) & 0xFFFF], x[(v >> 16) & 0xFFFF], x[v & 0xFFFF]);
    }
  } else {
    const int32_t* c = static_cast<const int32_t*>(indices) + j;
    for (int t = 0; t < 2; ++t) q[t] = _mm_set_ps(x[c[4 * t + 3]], x[c[4 * t + 2]], x[c[4 * t + 1]], x[c[4 * t]]);
  }
  return _mm256_insertf128_ps(_mm256_castps128_ps256(q[0]), q[1], 1);
}

// 8 values from j: f32, int8 widened, or uint8 codes looked up in the row's 16-entry table
// (two 8-entry vpermps and a blend on code bit 3).
template <int VK>
inline __m256 values8(const void* values, int64_t j, __m256 tlo, __m256 thi) {
  if constexpr (VK == kI8) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(values) + j))));
  } else if constexpr (VK == kCodes) {
    const __m256i c = _mm256_cvtepu8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(values) + j)));
    const __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));  // bit 3 -> sign bit
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, c), _mm256_permutevar8x32_ps(thi, c), hi);
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(values) + j);
  }
}

// Per CSR row: 16 nnz per step in two accumulators, one 8-lane step, then the ragged
// tail as a full 8-lane step with the lanes past the row zeroed (the arrays are padded
// and every stored column is < K, so the loads stay in bounds).
template <bool I16, int VK>
void gemv_rows(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 tlo = _mm256_setzero_ps(), thi = _mm256_setzero_ps();
  for (int64_t n = n0; n < n1; ++n) {
    if constexpr (VK == kCodes) {
      tlo = _mm256_loadu_ps(w.table + n * w.table_stride);
      thi = _mm256_loadu_ps(w.table + n * w.table_stride + 8);
    }
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; j + 16 <= e; j += 16) {
      a0 = _mm256_fmadd_ps(values8<VK>(w.values, j, tlo, thi), gather8<I16>(w.indices, j, x), a0);
      a1 = _mm256_fmadd_ps(values8<VK>(w.values, j + 8, tlo, thi), gather8<I16>(w.indices, j + 8, x), a1);
    }
    if (j + 8 <= e) {
      a0 = _mm256_fmadd_ps(values8<VK>(w.values, j, tlo, thi), gather8<I16>(w.indices, j, x), a0);
      j += 8;
    }
    if (j < e) {
      const __m256 m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(int(e - j)), lane));
      a1 = _mm256_fmadd_ps(_mm256_and_ps(m, values8<VK>(w.values, j, tlo, thi)),
                           _mm256_and_ps(m, gather8<I16>(w.indices, j, x)), a1);
    }
    acc[n - n0] = hsum(_mm256_add_ps(a0, a1));
  }
}

// One step for R activation rows: a[r] += values * x_r[window + col]: two vpermps (bits 0..2)
// and a blend on column bit 3 pick x.
template <int VK, int R>
inline void sell_step(const SellView& w, int64_t j, const __m256* xl, const __m256* xh, __m256 tlo, __m256 thi,
                      __m256* a) {
  const __m256i i = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.idx + j)));
  const __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(i, 28));  // bit 3 -> sign bit
  __m256 v;
  if constexpr (VK == kCodesPad) {  // index bit 7 marks padding: its value is 0 (the table has no 0)
    const __m256 real = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x80), i));
    v = _mm256_and_ps(real, values8<kCodes>(w.values, j, tlo, thi));
  } else {
    v = values8<VK>(w.values, j, tlo, thi);
  }
  for (int r = 0; r < R; ++r) {
    const __m256 xv =
        _mm256_blendv_ps(_mm256_permutevar8x32_ps(xl[r], i), _mm256_permutevar8x32_ps(xh[r], i), hi);
    a[r] = _mm256_fmadd_ps(v, xv, a[r]);
  }
}

// Slices [s0, s1) for R activation rows, as in spmm_avx512.cpp (same accumulator rotation for
// every R).
template <int VK, int R>
void sell_rows(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, float* acc, int64_t lda) {
  const __m256 tlo = VK >= kCodes ? _mm256_loadu_ps(w.table) : _mm256_setzero_ps();
  const __m256 thi = VK >= kCodes ? _mm256_loadu_ps(w.table + 8) : _mm256_setzero_ps();
  for (int64_t s = s0; s < s1; ++s) {
    const uint8_t* cnt = w.cnt + s * w.nb;
    int64_t j = w.off[s] * 8;  // element index of the current step
    __m256 a0[R], a1[R], a2[R], a3[R], xl[R], xh[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = a2[r] = a3[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < w.nb; ++b) {
      if (!cnt[b]) continue;  // (very sparse slices: most positions)
      const int64_t e = j + 8 * int64_t(cnt[b]);
      for (int r = 0; r < R; ++r) {
        xl[r] = _mm256_load_ps(xp + r * ldx + w.advance * b);
        xh[r] = _mm256_load_ps(xp + r * ldx + w.advance * b + 8);
      }
      for (; j + 32 <= e; j += 32) {
        sell_step<VK, R>(w, j, xl, xh, tlo, thi, a0);
        sell_step<VK, R>(w, j + 8, xl, xh, tlo, thi, a1);
        sell_step<VK, R>(w, j + 16, xl, xh, tlo, thi, a2);
        sell_step<VK, R>(w, j + 24, xl, xh, tlo, thi, a3);
      }
      if (j < e) {
        sell_step<VK, R>(w, j, xl, xh, tlo, thi, a0);
        if (j + 8 < e) {
          sell_step<VK, R>(w, j + 8, xl, xh, tlo, thi, a1);
          if (j + 16 < e) sell_step<VK, R>(w, j + 16, xl, xh, tlo, thi, a2);
        }
        j = e;
      }
    }
    for (int r = 0; r < R; ++r)
      _mm256_storeu_ps(acc + r * lda + (s - s0) * 8,
                       _mm256_add_ps(_mm256_add_ps(a0[r], a1[r]), _mm256_add_ps(a2[r], a3[r])));
  }
}

template <int VK>
void sell_dispatch(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, int rows, float* acc,
                   int64_t lda) {
  if (rows >= 2) sell_rows<VK, 2>(w, s0, s1, xp, ldx, acc, lda);
  else sell_rows<VK, 1>(w, s0, s1, xp, ldx, acc, lda);
}

}  // namespace

#include "kernels/spmm/spmm_dispatch_impl.h"

void sell_gemv(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, int rows, float* acc,
               int64_t lda) {
  if (w.vkind == 3) sell_dispatch<kCodesPad>(w, s0, s1, xp, ldx, rows, acc, lda);
  else if (w.vkind == 2) sell_dispatch<kCodes>(w, s0, s1, xp, ldx, rows, acc, lda);
  else if (w.vkind == 1) sell_dispatch<kI8>(w, s0, s1, xp, ldx, rows, acc, lda);
  else sell_dispatch<kF32>(w, s0, s1, xp, ldx, rows, acc, lda);
}

}  // namespace slimrt::kernels::detail::avx2

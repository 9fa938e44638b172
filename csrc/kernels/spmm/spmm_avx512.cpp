// AVX-512 CSR kernels.
//   csr_gemv: per CSR row, 32 nnz per step in two accumulators: x[col] assembled
//             from scalar loads (faster than vgatherdps on Zen 4, see gather16),
//             values widened (int8 -> f32) and FMA'd; the ragged tail uses masks.
//   csr_tile: per CSR row, each nnz broadcasts v[j] and FMAs it with the xt row
//             col[j] (mb = 16 * NV floats); U independent accumulator sets hide
//             the FMA latency when NV is small.
//   sell_gemv: the sliced-ELL batch-1 layout (CsrSell in spmm.h): 16 rows per slice
//             (one lane each), 32-column x windows (advancing by 16) in two registers;
//             a step is 16 u8 in-window columns -> vpermt2ps picks x, 16 values, one
//             FMA; up to 4 activation rows share each step's index and value loads.
//             Four accumulators per row rotate over a position's steps (FMA latency).
// gcc 12 reports its own _mm512_undefined_* placeholders inside arrays of vectors
// as uninitialized; every accumulator here is set before use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/spmm/spmm_internal.h"

namespace slimrt::kernels::detail::avx512 {
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

template <int VK, int NV, int U>
void tile_rows(const CsrView& w, int64_t n0, int64_t n1, const float* xt, float* acc) {
  constexpr int MB = 16 * NV;
  for (int64_t n = n0; n < n1; ++n) {
    const float* trow = VK == kCodes ? w.table + n * w.table_stride : nullptr;
    __m512 a[U][NV];
    for (int u = 0; u < U; ++u)
      for (int q = 0; q < NV; ++q) a[u][q] = _mm512_setzero_ps();
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    for (; j + U <= e; j += U) {
      for (int u = 0; u < U; ++u) {
        const __m512 v = _mm512_set1_ps(val_at<VK>(w, trow, j + u));
        const float* xp = xt + col_at(w, j + u) * MB;
        for (int q = 0; q < NV; ++q) a[u][q] = _mm512_fmadd_ps(v, _mm512_load_ps(xp + 16 * q), a[u][q]);
      }
    }
    for (; j < e; ++j) {
      const __m512 v = _mm512_set1_ps(val_at<VK>(w, trow, j));
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

// x[col[j .. j+15]] as one vector, built from scalar loads. On Zen 4 this is about
// twice as fast as vgatherdps (measured 1024x1024 at 90% sparsity: 42 vs 89 us):
// the gather is microcoded there, while 16 loads + insertps stay on the load and
// shuffle ports. uint16 columns are read 4 at a time and split with shifts.
template <bool I16>
inline __m512 gather16(const void* indices, int64_t j, const float* x) {
  __m128 q[4];
  if constexpr (I16) {
    const uint16_t* c = static_cast<const uint16_t*>(indices) + j;
    for (int t = 0; t < 4; ++t) {
      uint64_t v;
      std::memcpy(&v, c + 4 * t, 8);
      q[t] = _mm_set_ps(x[v >> 48], x[(v >> 32) & 0xFFFF], x[(v >> 16) & 0xFFFF], x[v & 0xFFFF]);
    }
  } else {
    const int32_t* c = static_cast<const int32_t*>(indices) + j;
    for (int t = 0; t < 4; ++t) q[t] = _mm_set_ps(x[c[4 * t + 3]], x[c[4 * t + 2]], x[c[4 * t + 1]], x[c[4 * t]]);
  }
  const __m256 lo = _mm256_insertf128_ps(_mm256_castps128_ps256(q[0]), q[1], 1);
  const __m256 hi = _mm256_insertf128_ps(_mm256_castps128_ps256(q[2]), q[3], 1);
  return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

// 16 values from j: f32, int8 widened, or uint8 codes looked up in the row's 16-entry
// table (held in a register: one vpermps per 16 values).
template <int VK>
inline __m512 values16(const void* values, int64_t j, __m512 table) {
  if constexpr (VK == kI8) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(values) + j))));
  } else if constexpr (VK == kCodes) {
    return _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                                     reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(values) + j))),
                                 table);
  } else {
    return _mm512_loadu_ps(static_cast<const float*>(values) + j);
  }
}

// Per CSR row: 32 nnz per step in two accumulators, then one 16-lane step, then the
// ragged tail as a full 16-lane step with the lanes past the row zeroed (indices and
// values are padded by 64 bytes and every stored column is < K, so the loads stay in
// bounds; zeroing the gathered x too keeps an inf/nan of a neighbour row out).
template <bool I16, int VK>
void gemv_rows(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc) {
  __m512 tab = _mm512_setzero_ps();
  for (int64_t n = n0; n < n1; ++n) {
    if constexpr (VK == kCodes) tab = _mm512_loadu_ps(w.table + n * w.table_stride);
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; j + 32 <= e; j += 32) {
      a0 = _mm512_fmadd_ps(values16<VK>(w.values, j, tab), gather16<I16>(w.indices, j, x), a0);
      a1 = _mm512_fmadd_ps(values16<VK>(w.values, j + 16, tab), gather16<I16>(w.indices, j + 16, x), a1);
    }
    if (j + 16 <= e) {
      a0 = _mm512_fmadd_ps(values16<VK>(w.values, j, tab), gather16<I16>(w.indices, j, x), a0);
      j += 16;
    }
    if (j < e) {
      const __mmask16 m = __mmask16((1u << (e - j)) - 1);
      a1 = _mm512_fmadd_ps(_mm512_maskz_mov_ps(m, values16<VK>(w.values, j, tab)),
                           _mm512_maskz_mov_ps(m, gather16<I16>(w.indices, j, x)), a1);
    }
    acc[n - n0] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  }
}

// The 16 values of the sliced-ELL step at element j (i: its in-block columns).
template <int VK>
inline __m512 sell_values(const void* values, int64_t j, __m512i i, __m512 tab) {
  if constexpr (VK == kCodesPad) {  // index bit 7 marks padding: its value is 0 (the table has no 0)
    const __mmask16 real = _mm512_testn_epi32_mask(i, _mm512_set1_epi32(0x80));
    const __m512i c = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(values) + j)));
    return _mm512_maskz_permutexvar_ps(real, c, tab);
  } else {
    return values16<VK>(values, j, tab);
  }
}

// One step for R activation rows: a[r] += values * x_r[window + col] (vpermt2ps uses bits 0..4).
template <int VK, int R>
inline void sell_step(const SellView& w, int64_t j, const __m512* xl, const __m512* xh, __m512 tab, __m512* a) {
  const __m512i i = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.idx + j)));
  const __m512 v = sell_values<VK>(w.values, j, i, tab);
  for (int r = 0; r < R; ++r) a[r] = _mm512_fmadd_ps(v, _mm512_permutex2var_ps(xl[r], i, xh[r]), a[r]);
}

// Slices [s0, s1) for R activation rows (x rows ldx apart, sums to acc rows lda apart). The steps
// of a position rotate over four accumulators per row the same way for every R, so a row's sum
// does not depend on how many rows run with it.
template <int VK, int R>
void sell_rows(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, float* acc, int64_t lda) {
  const __m512 tab = VK >= kCodes ? _mm512_loadu_ps(w.table) : _mm512_setzero_ps();
  for (int64_t s = s0; s < s1; ++s) {
    const uint8_t* cnt = w.cnt + s * w.nb;
    int64_t j = w.off[s] * 16;  // element index of the current step
    __m512 a0[R], a1[R], a2[R], a3[R], xl[R], xh[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = a2[r] = a3[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < w.nb; ++b) {
      if (!cnt[b]) continue;  // (very sparse slices: most positions)
      const int64_t e = j + 16 * int64_t(cnt[b]);
      for (int r = 0; r < R; ++r) {
        xl[r] = _mm512_load_ps(xp + r * ldx + w.advance * b);
        xh[r] = _mm512_load_ps(xp + r * ldx + w.advance * b + 16);
      }
      for (; j + 64 <= e; j += 64) {
        sell_step<VK, R>(w, j, xl, xh, tab, a0);
        sell_step<VK, R>(w, j + 16, xl, xh, tab, a1);
        sell_step<VK, R>(w, j + 32, xl, xh, tab, a2);
        sell_step<VK, R>(w, j + 48, xl, xh, tab, a3);
      }
      if (j < e) {
        sell_step<VK, R>(w, j, xl, xh, tab, a0);
        if (j + 16 < e) {
          sell_step<VK, R>(w, j + 16, xl, xh, tab, a1);
          if (j + 32 < e) sell_step<VK, R>(w, j + 32, xl, xh, tab, a2);
        }
        j = e;
      }
    }
    for (int r = 0; r < R; ++r)
      _mm512_storeu_ps(acc + r * lda + (s - s0) * 16,
                       _mm512_add_ps(_mm512_add_ps(a0[r], a1[r]), _mm512_add_ps(a2[r], a3[r])));
  }
}

template <int VK>
void sell_dispatch(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, int rows, float* acc,
                   int64_t lda) {
  switch (rows) {
    case 4: sell_rows<VK, 4>(w, s0, s1, xp, ldx, acc, lda); break;
    case 3: sell_rows<VK, 3>(w, s0, s1, xp, ldx, acc, lda); break;
    case 2: sell_rows<VK, 2>(w, s0, s1, xp, ldx, acc, lda); break;
    default: sell_rows<VK, 1>(w, s0, s1, xp, ldx, acc, lda); break;
  }
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

}  // namespace slimrt::kernels::detail::avx512

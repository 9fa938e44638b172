// The CSR and sliced-ELL kernel bodies, written once for every vector width.
// Included by spmm_<isa>.cpp inside its ISA namespace after that file's policy struct V
// (no include guard; everything lands in an anonymous namespace of that ISA namespace, so each
// ISA compiles its own copy with its own -m flags). Also provides the exported entry points
// csr_gemv, csr_tile (spmm_dispatch_impl.h) and sell_gemv.
//
// V must provide (static inline):
//   types   Vec (W floats), Mask (lane mask), Table (a 16-entry code table held in registers),
//           Idx (one sliced-ELL step's W u8 in-window columns, decoded)
//   consts  W == kCsrLanes, kSellRows (most activation rows a sell step serves)
//   ops     zero(), set1(f), load(p) (64-byte aligned), store(p, x) (unaligned), fma(a, b, c) = a*b + c,
//           add(a, b), hsum(x), first(n) (mask of lanes < n, 0 < n < W), keep(m, x) (lanes outside m = 0),
//           gather<I16>(indices, j, x) = x[col[j .. j+W-1]],
//           table(p) (16 floats at p), no_table(),
//           values_f32(v, j), values_i8(v, j) (widened), values_codes(v, j, Table) (W values at v + j),
//           sell_idx(p) (W u8 columns at p), sell_x(xl, xh, Idx) (x of the 2W-column window at the columns),
//           sell_codes_pad(v, j, Idx, Table) (codes; a column with bit 7 set is padding, value 0)
namespace {

inline int64_t col_at(const CsrView& w, int64_t j) {
  return w.idx16 ? static_cast<const uint16_t*>(w.indices)[j] : static_cast<const int32_t*>(w.indices)[j];
}

enum ValueKind { kF32, kI8, kCodes, kCodesPad };  // kCodesPad: sell only, padding marked in the index

using Vec = typename V::Vec;
constexpr int W = V::W;
static_assert(W == kCsrLanes, "the policy's vector width is the ISA's CSR lane count");

// Value j of a row whose code table starts at `trow` (codes only).
template <int VK>
inline float val_at(const CsrView& w, const float* trow, int64_t j) {
  if constexpr (VK == kCodes) return trow[static_cast<const uint8_t*>(w.values)[j]];
  else if constexpr (VK == kI8) return static_cast<float>(static_cast<const int8_t*>(w.values)[j]);
  else return static_cast<const float*>(w.values)[j];
}

// W values from j: f32, int8 widened, or uint8 codes looked up in the table.
template <int VK>
inline Vec values(const void* v, int64_t j, typename V::Table tab) {
  if constexpr (VK == kI8) return V::values_i8(v, j);
  else if constexpr (VK == kCodes) return V::values_codes(v, j, tab);
  else return V::values_f32(v, j);
}

// csr_tile: per CSR row, each nnz broadcasts v[j] and FMAs it with the xt row col[j]
// (mb = W * NV floats); U independent accumulator sets hide the FMA latency when NV is small.
template <int VK, int NV, int U>
void tile_rows(const CsrView& w, int64_t n0, int64_t n1, const float* xt, float* acc) {
  constexpr int MB = W * NV;
  for (int64_t n = n0; n < n1; ++n) {
    const float* trow = VK == kCodes ? w.table + n * w.table_stride : nullptr;
    Vec a[U][NV];
    for (int u = 0; u < U; ++u)
      for (int q = 0; q < NV; ++q) a[u][q] = V::zero();
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    for (; j + U <= e; j += U) {
      for (int u = 0; u < U; ++u) {
        const Vec v = V::set1(val_at<VK>(w, trow, j + u));
        const float* xp = xt + col_at(w, j + u) * MB;
        for (int q = 0; q < NV; ++q) a[u][q] = V::fma(v, V::load(xp + W * q), a[u][q]);
      }
    }
    for (; j < e; ++j) {
      const Vec v = V::set1(val_at<VK>(w, trow, j));
      const float* xp = xt + col_at(w, j) * MB;
      for (int q = 0; q < NV; ++q) a[0][q] = V::fma(v, V::load(xp + W * q), a[0][q]);
    }
    float* o = acc + (n - n0) * MB;
    for (int q = 0; q < NV; ++q) {
      Vec s = a[0][q];
      for (int u = 1; u < U; ++u) s = V::add(s, a[u][q]);
      V::store(o + W * q, s);
    }
  }
}

// csr_gemv: per CSR row, 2W nnz per step in two accumulators, then one W-lane step, then the
// ragged tail as a full W-lane step with the lanes past the row zeroed (indices and values are
// padded by 64 bytes and every stored column is < K, so the loads stay in bounds; zeroing the
// gathered x too keeps an inf/nan of a neighbour row out).
template <bool I16, int VK>
void gemv_rows(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc) {
  typename V::Table tab = V::no_table();
  for (int64_t n = n0; n < n1; ++n) {
    if constexpr (VK == kCodes) tab = V::table(w.table + n * w.table_stride);
    int64_t j = w.indptr[n];
    const int64_t e = w.indptr[n + 1];
    Vec a0 = V::zero(), a1 = V::zero();
    for (; j + 2 * W <= e; j += 2 * W) {
      a0 = V::fma(values<VK>(w.values, j, tab), V::template gather<I16>(w.indices, j, x), a0);
      a1 = V::fma(values<VK>(w.values, j + W, tab), V::template gather<I16>(w.indices, j + W, x), a1);
    }
    if (j + W <= e) {
      a0 = V::fma(values<VK>(w.values, j, tab), V::template gather<I16>(w.indices, j, x), a0);
      j += W;
    }
    if (j < e) {
      const typename V::Mask m = V::first(int(e - j));
      a1 = V::fma(V::keep(m, values<VK>(w.values, j, tab)), V::keep(m, V::template gather<I16>(w.indices, j, x)),
                  a1);
    }
    acc[n - n0] = V::hsum(V::add(a0, a1));
  }
}

// One sell step for R activation rows: a[r] += values * x_r[window + column].
template <int VK, int R>
inline void sell_step(const SellView& w, int64_t j, const Vec* xl, const Vec* xh, typename V::Table tab, Vec* a) {
  const typename V::Idx i = V::sell_idx(w.idx + j);
  Vec v;
  if constexpr (VK == kCodesPad) v = V::sell_codes_pad(w.values, j, i, tab);
  else v = values<VK>(w.values, j, tab);
  for (int r = 0; r < R; ++r) a[r] = V::fma(v, V::sell_x(xl[r], xh[r], i), a[r]);
}

// Slices [s0, s1) for R activation rows (x rows ldx apart, sums to acc rows lda apart). The steps
// of a position rotate over four accumulators per row the same way for every R, so a row's sum
// does not depend on how many rows run with it.
template <int VK, int R>
void sell_rows(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, float* acc, int64_t lda) {
  const typename V::Table tab = VK >= kCodes ? V::table(w.table) : V::no_table();
  for (int64_t s = s0; s < s1; ++s) {
    const uint8_t* cnt = w.cnt + s * w.nb;
    int64_t j = w.off[s] * W;  // element index of the current step
    Vec a0[R], a1[R], a2[R], a3[R], xl[R], xh[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = a2[r] = a3[r] = V::zero();
    for (int64_t b = 0; b < w.nb; ++b) {
      if (!cnt[b]) continue;  // (very sparse slices: most positions)
      const int64_t e = j + W * int64_t(cnt[b]);
      for (int r = 0; r < R; ++r) {
        xl[r] = V::load(xp + r * ldx + w.advance * b);
        xh[r] = V::load(xp + r * ldx + w.advance * b + W);
      }
      for (; j + 4 * W <= e; j += 4 * W) {
        sell_step<VK, R>(w, j, xl, xh, tab, a0);
        sell_step<VK, R>(w, j + W, xl, xh, tab, a1);
        sell_step<VK, R>(w, j + 2 * W, xl, xh, tab, a2);
        sell_step<VK, R>(w, j + 3 * W, xl, xh, tab, a3);
      }
      if (j < e) {
        sell_step<VK, R>(w, j, xl, xh, tab, a0);
        if (j + W < e) {
          sell_step<VK, R>(w, j + W, xl, xh, tab, a1);
          if (j + 2 * W < e) sell_step<VK, R>(w, j + 2 * W, xl, xh, tab, a2);
        }
        j = e;
      }
    }
    for (int r = 0; r < R; ++r)
      V::store(acc + r * lda + (s - s0) * W, V::add(V::add(a0[r], a1[r]), V::add(a2[r], a3[r])));
  }
}

// rows >= R (R counting down from kSellRows) runs R rows at once; 1 is the last resort.
template <int VK, int R = V::kSellRows>
void sell_dispatch(const SellView& w, int64_t s0, int64_t s1, const float* xp, int64_t ldx, int rows, float* acc,
                   int64_t lda) {
  if constexpr (R > 1) {
    if (rows >= R) return sell_rows<VK, R>(w, s0, s1, xp, ldx, acc, lda);
    return sell_dispatch<VK, R - 1>(w, s0, s1, xp, ldx, rows, acc, lda);
  } else {
    sell_rows<VK, 1>(w, s0, s1, xp, ldx, acc, lda);
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

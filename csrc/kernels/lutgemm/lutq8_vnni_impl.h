// The AVX-512 VNNI int8-table LUT-GEMM kernel body (layout: lutq8.h), shared by lutq8_vnni.cpp
// (vpshufb decode: per-row tables, any AVX-512BW + VNNI CPU) and lutq8_vbmi.cpp (vpermb decode:
// one table shared by every row, AVX512_VBMI CPUs). Included once per file, inside that file's
// namespace, after it defines the decode policy `Dec`:
//   Dec::Table                       what one row group's decode needs in registers
//   Dec::load<SB>(table64, mask)     from the group's 64 table bytes (lane i = row 4g+i)
//   Dec::decode(t, v, mask)          64 int8 weights from 64 index bytes whose low SB bits (after
//                                    the chunk's shift) are the indices; higher bits are garbage
//
//   R row groups (4 rows each) x P activation rows per call, over all of K.
//   Per row group and block: one 64-byte load of indices (4 rows x 128/sb k); per chunk j a
//   16-bit shift by j*sb brings the chunk's indices to the low bits, Dec decodes 64 of them
//   into int8 weights, and each of the P activation rows contributes one vpdpbusd with its 16
//   bytes k = kb*b + 16j .. +15 broadcast to the 4 lanes (vbroadcasti32x4). Each decoded vector
//   feeds P vpdpbusd, each broadcast R. At the end of K the 4 dwords per row are summed
//   (two unpack/add rounds for 4 accumulators at once, then one vpermd into row order).
//   Tiles: P=1 R=8 (GEMV: 8 independent accumulators hide the vpdpbusd latency), P=2 R=6,
//   P=3 R=5, P=4 R=4 (16 accumulators + 4 tables + 4 broadcasts + temporaries <= 32 zmm).
//   Measured on Zen 4 (K=N=1024 and 4096, M=64, 1 thread, ratio to qgemm's 8x48c4, vpshufb):
//   P=4 R=4 0.84-0.87, P=5 R=3 0.83-0.85, P=3 R=5 0.79, P=8 R=2 0.71-0.79, P=2 R=6 0.69-0.73.
//   The decode competes with vpdpbusd for the vector pipes, so the tile must amortize it over
//   several activation rows; vpermb (6-bit index, so no AND) saves 2 of ~8 ops per 128 weights.
// (The including file includes <immintrin.h> and lutq8_internal.h first.)
#pragma once

namespace {

// Rows 4r+i of 4 accumulators (lane i, 4 partial dwords each) -> dword 4r+i of the result.
inline __m512i reduce4(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
  const __m512i x01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
  const __m512i x23 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
  const __m512i z = _mm512_add_epi32(_mm512_unpacklo_epi64(x01, x23), _mm512_unpackhi_epi64(x01, x23));
  // z dword 4i + r holds row 4r + i
  const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_epi32(perm, z);
}

// BC (P == 1): xq holds each 16-byte chunk 4 times (lutq8_internal.h), loaded as it is used.
template <class Dec, int SB, int R, int P, bool BC>
void rows_kernel(const LutQ8View& w, int64_t g, const uint8_t* xq, int64_t ldx, int32_t* out, int64_t ldo) {
  static_assert(!BC || P == 1, "the broadcast activation layout serves one row");
  constexpr int S = 8 / SB, KB = 128 / SB;
  const int64_t nb = w.nblocks;
  const __m512i mask = _mm512_set1_epi8(static_cast<char>((1 << SB) - 1));
  const uint8_t* wp[R];
  typename Dec::Table tab[R];
  __m512i acc[R][P];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    wp[r] = w.idx + (g + r) * nb * 64;
    tab[r] = Dec::template load<SB>(w.table + (g + r) * 64, mask);
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) acc[r][q] = _mm512_setzero_si512();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* xb = xq + b * KB;
#pragma GCC unroll 8
    for (int j = 0; j < S; ++j) {
      __m512i xv[P];
#pragma GCC unroll 8
      for (int q = 0; q < P; ++q)
        xv[q] = BC ? _mm512_load_si512(xq + 4 * (b * KB + 16 * j))
                   : _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + q * ldx + 16 * j)));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        __m512i v = _mm512_loadu_si512(wp[r] + b * 64);
        if (j) v = _mm512_srli_epi16(v, j * SB);
        const __m512i wv = Dec::decode(tab[r], v, mask);
#pragma GCC unroll 8
        for (int q = 0; q < P; ++q) acc[r][q] = _mm512_dpbusd_epi32(acc[r][q], xv[q], wv);
      }
    }
  }
  const __m512i zero = _mm512_setzero_si512();
#pragma GCC unroll 8
  for (int q = 0; q < P; ++q) {
#pragma GCC unroll 2
    for (int r0 = 0; r0 < R; r0 += 4) {
      const int cnt = R - r0 < 4 ? R - r0 : 4;
      const __m512i s = reduce4(acc[r0][q], cnt > 1 ? acc[r0 + 1 < R ? r0 + 1 : r0][q] : zero,
                                cnt > 2 ? acc[r0 + 2 < R ? r0 + 2 : r0][q] : zero,
                                cnt > 3 ? acc[r0 + 3 < R ? r0 + 3 : r0][q] : zero);
      _mm512_mask_storeu_epi32(out + q * ldo + 4 * r0, static_cast<__mmask16>((1u << (4 * cnt)) - 1), s);
    }
  }
}

template <int P> constexpr int tile_r() { return P == 1 ? 8 : P == 2 ? 6 : P == 3 ? 5 : 4; }

template <class Dec, int SB, int P, bool BC = false>
void rows_p(const LutQ8View& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int32_t* out,
            int64_t ldo) {
  constexpr int R = tile_r<P>();
  int64_t g = g0;
  for (; g + R <= g1; g += R) rows_kernel<Dec, SB, R, P, BC>(w, g, xq, ldx, out + 4 * (g - g0), ldo);
  int32_t* o = out + 4 * (g - g0);
  switch (g1 - g) {  // the last < R row groups in one call
    case 0: break;
    case 1: rows_kernel<Dec, SB, 1, P, BC>(w, g, xq, ldx, o, ldo); break;
    case 2: rows_kernel<Dec, SB, 2, P, BC>(w, g, xq, ldx, o, ldo); break;
    case 3: rows_kernel<Dec, SB, 3, P, BC>(w, g, xq, ldx, o, ldo); break;
    case 4: rows_kernel<Dec, SB, (R > 4 ? 4 : 1), P, BC>(w, g, xq, ldx, o, ldo); break;
    case 5: rows_kernel<Dec, SB, (R > 5 ? 5 : 1), P, BC>(w, g, xq, ldx, o, ldo); break;
    case 6: rows_kernel<Dec, SB, (R > 6 ? 6 : 1), P, BC>(w, g, xq, ldx, o, ldo); break;
    default: rows_kernel<Dec, SB, (R > 7 ? 7 : 1), P, BC>(w, g, xq, ldx, o, ldo); break;
  }
}

template <class Dec, int SB>
void rows_sb(const LutQ8View& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int p, bool bcast,
             int32_t* out, int64_t ldo) {
  if (bcast) return rows_p<Dec, SB, 1, true>(w, g0, g1, xq, ldx, out, ldo);
  switch (p) {
    case 1: rows_p<Dec, SB, 1>(w, g0, g1, xq, ldx, out, ldo); break;
    case 2: rows_p<Dec, SB, 2>(w, g0, g1, xq, ldx, out, ldo); break;
    case 3: rows_p<Dec, SB, 3>(w, g0, g1, xq, ldx, out, ldo); break;
    default: rows_p<Dec, SB, 4>(w, g0, g1, xq, ldx, out, ldo); break;
  }
}

}  // namespace

// The exported entry (declared in lutq8_internal.h) of the including file's namespace.
#define SLIMRT_LUTQ8_ROWS_ENTRY(Dec)                                                                      \
  void lutq8_rows(const LutQ8View& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int p,     \
                  bool bcast, int32_t* out, int64_t ldo) {                                              \
    switch (w.sb) {                                                                                     \
      case 1: rows_sb<Dec, 1>(w, g0, g1, xq, ldx, p, bcast, out, ldo); break;                           \
      case 2: rows_sb<Dec, 2>(w, g0, g1, xq, ldx, p, bcast, out, ldo); break;                           \
      default: rows_sb<Dec, 4>(w, g0, g1, xq, ldx, p, bcast, out, ldo); break;                          \
    }                                                                                                   \
  }

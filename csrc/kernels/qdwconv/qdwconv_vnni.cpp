// AVX-512 VNNI int8 depthwise convolution rows: 64 channels per block, vpdpbusd over groups of
// four kernel ROWS (taps (kh, kw), (kh+1, kw), (kh+2, kw), (kh+3, kw) of a channel in one dword).
//
// Per output row and channel block, every input column j of the padded row is turned once into
// four vectors V[j][q] (q = 0..3): two unpack levels (bytes, then words) interleave the 64 channels
// of the kernel rows 4g..4g+3 (a missing row reads zero bytes and has zero weights), so dword i of
// 128-bit lane L of V[j][q] holds channel 16L + 4q + i, its four bytes being the four rows. Every
// output pixel then needs KW vpdpbusd per q and row group (3x3: 12 for 64 channels, against 36
// vpmovzxbd + vpmaddwd + vpaddd triples without VNNI), and a column is shared by the KW / stride
// pixels that read it. Padding columns and rows read x_zero (the value 0) like every ISA.
// Weights (PackedQ8Dw::w4): [C/64 blocks][row groups][KW][q][64 bytes] in that same order.
// The four accumulators go back to channel order with a 4x4 transpose of 128-bit lanes
// (8 vshufi32x4), then the epilogue is the AVX-512 one (finish<Q8DwAvx512> of qdwconv_impl.h:
// same int32 sums, the same fma and rounding, bit-identical to every other ISA). u8 output
// without residual stays in lane order (relu / relu6 clamp after the scaling, two pack levels;
// the same bytes).
// 16 / 32 channels at stride 1: 64 / C output pixels per block (the 64-byte column load holds
// 64 / C neighbouring columns). Inputs over 2 MB: the next output row's new input rows are
// prefetched while this row's columns are built. Measured on Zen 4, 1 thread, against the
// previous kernel: 32x112x112 s1 1.45x (b1); 96x112x112 s2 1.43x, 144x56x56 s1 1.16x (batch 16).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <new>

#include "kernels/eltwise/vec_avx512.h"
#include "kernels/qdwconv/qdwconv_internal.h"

namespace slimrt::kernels::detail::vnni {

// finish<Q8DwAvx512> (the AVX-512 epilogue) and the policy's lane masks.
#include "kernels/qdwconv/qdwconv_impl.h"

namespace {

using V = Q8DwAvx512;

inline __mmask64 tail_mask64(int64_t left) {
  return left >= 64 ? ~static_cast<__mmask64>(0) : (static_cast<__mmask64>(1) << left) - 1;
}

// The interleaved columns of one output row (64-byte aligned; local to this file, so no template
// or inline function compiled with AVX-512 flags is shared with baseline code).
struct ColumnBuffer {
  explicit ColumnBuffer(size_t n)
      : v(static_cast<__m512i*>(::operator new(n * sizeof(__m512i), std::align_val_t(64)))) {}
  ~ColumnBuffer() { ::operator delete(v, std::align_val_t(64)); }
  ColumnBuffer(const ColumnBuffer&) = delete;
  ColumnBuffer& operator=(const ColumnBuffer&) = delete;
  __m512i* v;
};

// 4x4 transpose of 128-bit lanes: out[k] lane q = in[q] lane k. Turns the kernel's lane order
// (acc[q] lane L = channels 16L + 4q + 0..3) into channel order and back.
inline void transpose_lanes(const __m512i* in, __m512i* out) {
  const __m512i t0 = _mm512_shuffle_i32x4(in[0], in[1], _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i t1 = _mm512_shuffle_i32x4(in[2], in[3], _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i t2 = _mm512_shuffle_i32x4(in[0], in[1], _MM_SHUFFLE(3, 2, 3, 2));
  const __m512i t3 = _mm512_shuffle_i32x4(in[2], in[3], _MM_SHUFFLE(3, 2, 3, 2));
  out[0] = _mm512_shuffle_i32x4(t0, t1, _MM_SHUFFLE(2, 0, 2, 0));
  out[1] = _mm512_shuffle_i32x4(t0, t1, _MM_SHUFFLE(3, 1, 3, 1));
  out[2] = _mm512_shuffle_i32x4(t2, t3, _MM_SHUFFLE(2, 0, 2, 0));
  out[3] = _mm512_shuffle_i32x4(t2, t3, _MM_SHUFFLE(3, 1, 3, 1));
}

// Interleaves four rows of 64 channels into V[0..3] (see the file comment).
inline void interleave4(__m512i r0, __m512i r1, __m512i r2, __m512i r3, __m512i* v) {
  const __m512i lo01 = _mm512_unpacklo_epi8(r0, r1), hi01 = _mm512_unpackhi_epi8(r0, r1);
  const __m512i lo23 = _mm512_unpacklo_epi8(r2, r3), hi23 = _mm512_unpackhi_epi8(r2, r3);
  v[0] = _mm512_unpacklo_epi16(lo01, lo23);
  v[1] = _mm512_unpackhi_epi16(lo01, lo23);
  v[2] = _mm512_unpacklo_epi16(hi01, hi23);
  v[3] = _mm512_unpackhi_epi16(hi01, hi23);
}

// KW > 0: compile-time kernel width (3: the twelve weight vectors stay in registers).
template <int KW>
void rows_impl(const Q8DwArgs& args, int64_t r0, int64_t r1) {
  const Q8DwArgs a = args;  // local: the u8 output stores may alias a referenced struct
  const DwConv2dShape& s = *a.s;
  const int kw_n = KW ? KW : s.kw;
  const int kh_n = s.kh, G = (kh_n + 3) / 4;
  const int64_t C = s.c;
  // Pixels per vector: 16- and 32-channel layers with stride 1 run 64 / C neighbouring output pixels
  // in one 64-channel block (a 64-byte load at column iw holds columns iw .. iw + P - 1, and output
  // pixel ow + u reads exactly the columns that load's part u holds; the packed weights repeat the
  // channels, PackedQ8Dw::w4), so no lane is idle.
  const int P = ((C == 16 || C == 32) && s.sw == 1) ? static_cast<int>(64 / C) : 1;
  const __mmask64 cmask = P > 1 ? (static_cast<__mmask64>(1) << C) - 1 : 0;  // the bytes of one column
  // Padded input columns the row reads: j = iw + pl in [0, ncol).
  const int64_t ncol = (s.ow - 1) * s.sw + static_cast<int64_t>(kw_n - 1) * s.dw + 1;
  ColumnBuffer vbuf_store(static_cast<size_t>(ncol) * 4 * G);
  __m512i* vbuf = vbuf_store.v;
  const __m512i zx = _mm512_set1_epi8(static_cast<char>(a.x_zero)), zero = _mm512_setzero_si512();
  const int8_t* w4 = reinterpret_cast<const int8_t*>(a.w4);
  const int64_t wblk = static_cast<int64_t>(G) * kw_n * 4 * 64;  // weight bytes per channel block
  // An input far bigger than the caches (a big batch): the input rows the next output row adds
  // are prefetched while this row builds its columns, a row ahead of their use (a strided
  // layer otherwise waits on DRAM for each new row).
  const int64_t ldh = s.w * C;
  const bool prefetch = s.n * s.h * ldh >= (int64_t{2} << 20);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / s.oh, oh = r % s.oh;
    const char* pf_row[8];
    int pf_n = 0;
    if (prefetch && oh + 1 < s.oh) {
      const int64_t last = oh * s.sh - s.pt + static_cast<int64_t>(kh_n - 1) * s.dh;  // this row's last input row
      for (int kh = 0; kh < kh_n && pf_n < 8; ++kh) {
        const int64_t ih = (oh + 1) * s.sh - s.pt + static_cast<int64_t>(kh) * s.dh;
        if (ih > last && ih >= 0 && ih < s.h)
          pf_row[pf_n++] = reinterpret_cast<const char*>(a.x + (n * s.h + ih) * ldh);
      }
    }
    int64_t pf_pos = 0;  // bytes of the pf rows prefetched so far
    for (int64_t c = 0; c < C; c += 64) {
      const __mmask64 m64 = tail_mask64(C - c);
      // 1. the interleaved columns
      for (int g = 0; g < G; ++g) {
        const uint8_t* rows[4];
        bool pad[4];
        for (int i = 0; i < 4; ++i) {
          const int kh = 4 * g + i;
          const int64_t ih = oh * s.sh - s.pt + static_cast<int64_t>(kh) * s.dh;
          pad[i] = kh >= kh_n;  // missing kernel row: zero bytes (zero weights)
          rows[i] = (!pad[i] && ih >= 0 && ih < s.h) ? a.x + ((n * s.h + ih) * s.w) * C + c : nullptr;
        }
        __m512i vz[4];  // a padding column
        interleave4(pad[0] ? zero : zx, pad[1] ? zero : zx, pad[2] ? zero : zx, pad[3] ? zero : zx, vz);
        for (int64_t j = 0; j < ncol; ++j) {
          const int64_t iw = j - s.pl;
          __m512i* v = vbuf + (j * G + g) * 4;
          if (pf_n && c == 0 && g == 0) {  // the next rows' bytes up to this column's end
            const int64_t end = std::min(ldh, (iw + 1) * C);
            for (; pf_pos < end; pf_pos += 64)
              for (int t = 0; t < pf_n; ++t) __builtin_prefetch(pf_row[t] + pf_pos, 0, 2);
          }
          if (iw >= s.w || iw + P - 1 < 0) {
            v[0] = vz[0], v[1] = vz[1], v[2] = vz[2], v[3] = vz[3];
            continue;
          }
          if (iw < 0) {  // P > 1 only: the first parts are padding, the rest starts the image
            __mmask64 lm = 0;
            for (int u = 0; u < P; ++u)
              if (iw + u >= 0 && iw + u < s.w) lm |= cmask << (u * C);
            __m512i x[4];
            for (int i = 0; i < 4; ++i)  // the masked load reads only the lanes of columns >= 0
              x[i] = rows[i] ? _mm512_mask_loadu_epi8(zx, lm, rows[i] + iw * C) : (pad[i] ? zero : zx);
            interleave4(x[0], x[1], x[2], x[3], v);
            continue;
          }
          __m512i x[4];
          if (P > 1) {  // columns iw .. iw + P - 1; the ones past the image read x_zero
            __mmask64 lm = 0;
            for (int u = 0; u < P; ++u)
              if (iw + u < s.w) lm |= cmask << (u * C);
            for (int i = 0; i < 4; ++i)
              x[i] = rows[i] ? _mm512_mask_loadu_epi8(zx, lm, rows[i] + iw * C) : (pad[i] ? zero : zx);
          } else {
            for (int i = 0; i < 4; ++i)
              x[i] = rows[i] ? _mm512_maskz_loadu_epi8(m64, rows[i] + iw * C) : (pad[i] ? zero : zx);
          }
          interleave4(x[0], x[1], x[2], x[3], v);
        }
      }
      if (pf_n && c == 0)  // the rest of the next rows (columns this row does not read)
        for (; pf_pos < ldh; pf_pos += 64)
          for (int t = 0; t < pf_n; ++t) __builtin_prefetch(pf_row[t] + pf_pos, 0, 2);
      // 2. the pixels
      const int8_t* wb = w4 + (c / 64) * wblk;
      __m512i wreg[KW == 3 ? 12 : 1];
      if (KW == 3 && G == 1)
        for (int t = 0; t < 12; ++t) wreg[t] = _mm512_load_si512(wb + 64 * t);
      auto wv = [&](int g, int kw, int q) {
        if (KW == 3 && G == 1) return wreg[kw * 4 + q];
        return _mm512_load_si512(wb + ((static_cast<int64_t>(g) * kw_n + kw) * 4 + q) * 64);
      };
      // Per-channel terms, channel order (k) and the kernel's lane order (q). The accumulators
      // start at -x_zero * wsum: the int32 sum is the same in any order.
      __m512i zs[4], negzs_q[4];
      __m512 mul[4], bias[4], mul_q[4], bias_q[4];
      __mmask16 mk[4];
      for (int k = 0; k < 4; ++k) {
        const int64_t ck = P > 1 ? (16 * k) % C : c + 16 * k;  // P > 1: lane 16k + i is channel (16k + i) % C
        mk[k] = P > 1 ? static_cast<__mmask16>(0xFFFF) : V::tail(C - ck);
        zs[k] = mk[k] ? _mm512_mullo_epi32(_mm512_set1_epi32(a.x_zero), _mm512_load_si512(a.wsum + ck)) : zero;
        mul[k] = _mm512_maskz_loadu_ps(mk[k], a.mul + ck);
        bias[k] = a.bias ? _mm512_maskz_loadu_ps(mk[k], a.bias + ck) : _mm512_setzero_ps();
      }
      {
        __m512i t[4], u[4];
        for (int k = 0; k < 4; ++k) t[k] = _mm512_sub_epi32(zero, zs[k]);
        transpose_lanes(t, negzs_q);
        for (int k = 0; k < 4; ++k) t[k] = _mm512_castps_si512(mul[k]);
        transpose_lanes(t, u);
        for (int q = 0; q < 4; ++q) mul_q[q] = _mm512_castsi512_ps(u[q]);
        for (int k = 0; k < 4; ++k) t[k] = _mm512_castps_si512(bias[k]);
        transpose_lanes(t, u);
        for (int q = 0; q < 4; ++q) bias_q[q] = _mm512_castsi512_ps(u[q]);
      }
      // u8 output without residual (MobileNet-style blocks): the epilogue runs in lane order and
      // two pack levels (packssdw, packuswb, per 128-bit lane) put the 64 bytes in channel order.
      const bool fast = a.out_u8 && !a.residual && !a.residual_u8;
      const __m512 fzero = _mm512_setzero_ps(), alpha = _mm512_set1_ps(a.alpha);
      const __m512 inv_os = _mm512_set1_ps(a.inv_out_scale);
      // t = min(hi, [max(0,] y * inv [)]): relu / relu6 clamp after the scaling (see the fast path)
      const __m512 hi = _mm512_set1_ps(a.act == Act::Relu6 ? std::min(512.f, 6.f * a.inv_out_scale) : 512.f);
      const bool lower = a.act == Act::Relu || a.act == Act::Relu6;
      const __m512i oz16 = _mm512_set1_epi16(static_cast<int16_t>(a.out_zero));
      for (int64_t ow = 0; ow < s.ow; ow += P) {
        __m512i acc[4] = {negzs_q[0], negzs_q[1], negzs_q[2], negzs_q[3]};
        for (int g = 0; g < G; ++g)
          for (int kw = 0; kw < kw_n; ++kw) {
            const __m512i* v = vbuf + ((ow * s.sw + static_cast<int64_t>(kw) * s.dw) * G + g) * 4;
            for (int q = 0; q < 4; ++q) acc[q] = _mm512_dpbusd_epi32(acc[q], v[q], wv(g, kw, q));
          }
        const int64_t p = r * s.ow + ow;
        const int64_t npx = P > 1 ? std::min<int64_t>(P, s.ow - ow) : 1;  // pixels of this vector
        if (fast) {  // the same bytes as finish(), lane order
          // finish() computes clamp(rint(act(y) * inv) + zero, 0, 255). Here: t = y * inv, relu:
          // max(0, t), then min(hi, t) with hi = 512, or min(512, 6 * inv) for relu6 (inv > 0 and
          // rounding is monotonic, so max(0, y) * inv = max(0, y * inv) and min(6, y) * inv =
          // min(6 * inv, y * inv) exactly); cvtps2dq rounds to nearest even; the signed word pack
          // (values <= 512; NaN / -inf give INT_MIN -> -32768), the saturating word add of the zero
          // point and the unsigned byte pack clamp to [0, 255]. NaN stays NaN through max / min
          // (operand order), so it gives 0 like finish().
          __m512i qv[4];
          for (int q = 0; q < 4; ++q) {
            __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[q]), mul_q[q], bias_q[q]);
            if (a.act == Act::LeakyRelu) y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, fzero, _CMP_LT_OQ), y, alpha);
            __m512 t = _mm512_mul_ps(y, inv_os);
            if (lower) t = _mm512_max_ps(fzero, t);
            qv[q] = _mm512_cvtps_epi32(_mm512_min_ps(hi, t));
          }
          const __m512i p0 = _mm512_adds_epi16(_mm512_packs_epi32(qv[0], qv[1]), oz16);
          const __m512i p1 = _mm512_adds_epi16(_mm512_packs_epi32(qv[2], qv[3]), oz16);
          const __mmask64 sm = P > 1 ? tail_mask64(npx * C) : m64;
          _mm512_mask_storeu_epi8(static_cast<uint8_t*>(a.y) + p * C + c, sm, _mm512_packus_epi16(p0, p1));
          continue;
        }
        __m512i nat[4];  // back to channel order (acc already holds the zero-point correction)
        transpose_lanes(acc, nat);
        for (int k = 0; k < 4; ++k) {
          if (P > 1) {  // lanes 16k.. are pixel ow + 16k / C, channels (16k) % C ..
            if ((16 * k) / C < npx) finish<V>(a, nat[k], mul[k], bias[k], p + (16 * k) / C, (16 * k) % C, mk[k]);
          } else if (mk[k]) {
            finish<V>(a, nat[k], mul[k], bias[k], p, c + 16 * k, mk[k]);
          }
        }
      }
    }
  }
}

}  // namespace

void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1) {
  if (a.s->kw == 3) rows_impl<3>(a, r0, r1);
  else rows_impl<0>(a, r0, r1);
}

}  // namespace slimrt::kernels::detail::vnni

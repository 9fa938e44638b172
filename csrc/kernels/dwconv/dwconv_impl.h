// Generic body of the depthwise NHWC convolution (dwconv.h) over the Vec
// interface (eltwise/vec_scalar.h).
//   3x3, dilation 1, stride 1 or 2 (rows3x3): per output row, blocks of P
//     pixels (8 with AVX-512 / 4 otherwise at stride 1, 4 at stride 2; then
//     4, 2, 1 for the rest) that share input loads, channel vectors inside;
//     border pixels too (blocks at the row's ends read out-of-image columns
//     as zeros).
//   3x3, dilation 1, stride 1 with 32 vector registers, rows of >= 16 pixels,
//     outputs that stay in the caches (rows3x3_slide): channel vector outer,
//     its 9 weights in registers for the whole row; each 8-pixel block carries
//     the last two input columns of every kernel row to the next block.
//     Measured on Zen 4, 1 thread, against rows3x3: 112x112x32 1.2-1.45x,
//     56x56x144 1.17-1.4x; DRAM-sized tensors stay on rows3x3 (0.5-0.6x
//     there: a channel-outer sweep touches each input line once per pass).
//   Other shapes (rows_t): 1 vector of channels x 4 output pixels (interior),
//     KWT = 3 fixes KW at compile time, KWT = 0 reads it at run time.
//   Border pixels (taps clipped): 1 vector x 1 pixel (pixel()).
#pragma once
#include <cstdint>
#include <cstddef>

#include "kernels/dwconv/dwconv.h"
#include "kernels/eltwise/vmath.h"

namespace {

// St: the ISA's streaming store (St::stream(p, v) to a vector-aligned p, St::fence()).
template <class V, class St>
struct DwConvImpl {
  using T = typename V::T;
  using Shape = slimrt::kernels::DwConv2dShape;
  using Epi = slimrt::Epilogue;
  static constexpr int PB = 4;  // output pixels per register block

  static T epilogue(T acc, const Epi& ep, int64_t c, int k, const float* res) {
    if (ep.scale) acc = V::mul(acc, V::load_n(ep.scale + c, k));
    if (ep.bias) acc = V::add(acc, V::load_n(ep.bias + c, k));
    if (res) acc = V::add(acc, V::load_n(res + c, k));
    // relu / relu6 are fused here; other activations run over the finished row (row_act).
    if (ep.act == slimrt::Act::Relu) acc = V::max(V::zero(), acc);
    else if (ep.act == slimrt::Act::Relu6) acc = V::min(V::set1(6.f), V::max(V::zero(), acc));
    return acc;
  }

  // The epilogue of one channel vector, loaded once per block instead of once per pixel (the
  // per-pixel tests and masked loads of epilogue() were most of the 3x3 kernel's instructions:
  // 64x64x128 ran at 34 GF/s). Same operations in the same order as epilogue(): scale, bias,
  // residual, then the relu / relu6 clamp as max(lo, .) and min(hi, .) with lo = -inf, hi = +inf
  // where there is no clamp (NaN and -0 pass through both, like max(0, .) / min(6, .)).
  struct EpiVec {
    T sc, bi, lo, hi;
  };
  static EpiVec epi_vec(const Epi& ep, int64_t c, int k) {
    const bool full = k == V::W;
    EpiVec e;
    e.sc = ep.scale ? (full ? V::load(ep.scale + c) : V::load_n(ep.scale + c, k)) : V::set1(1.f);
    e.bi = ep.bias ? (full ? V::load(ep.bias + c) : V::load_n(ep.bias + c, k)) : V::zero();
    const bool clamp = ep.act == slimrt::Act::Relu || ep.act == slimrt::Act::Relu6;
    e.lo = clamp ? V::zero() : V::set1(-__builtin_inff());
    e.hi = V::set1(ep.act == slimrt::Act::Relu6 ? 6.f : __builtin_inff());
    return e;
  }
  template <bool FULL>
  static T finish(T acc, const EpiVec& e, bool scale, bool bias, const float* res, int64_t c, int k) {
    if (scale) acc = V::mul(acc, e.sc);
    if (bias) acc = V::add(acc, e.bi);
    if (res) acc = V::add(acc, FULL ? V::load(res + c) : V::load_n(res + c, k));
    return V::min(e.hi, V::max(e.lo, acc));
  }

  // The epilogue and the stores of a block of P pixels (pixel b at yo + b * C, channels [c, c + k)).
  template <int P, bool FULL>
  __attribute__((always_inline)) static void store_block(const T (&acc)[P], const EpiVec& ev, bool scale, bool bias,
                                                         const Epi& ep, float* yo, const float* res, int64_t C,
                                                         int64_t c, int k, bool nt) {
#pragma GCC unroll 8
    for (int b = 0; b < P; ++b) {
      T v = finish<FULL>(acc[b], ev, scale, bias, res ? res + b * ep.ldr : nullptr, c, k);
      if (FULL && nt) St::stream(yo + b * C + c, v);
      else if (FULL) V::store(yo + b * C + c, v);
      else V::store_n(yo + b * C + c, v, k);
    }
  }

  static void row_act(float* yr, int64_t n, const Epi& ep) {
    if (ep.act != slimrt::Act::None && ep.act != slimrt::Act::Relu && ep.act != slimrt::Act::Relu6)
      act_any<V>(yr, yr, n, ep.act, ep.alpha);
  }

  template <int KWT, bool FULL>
  static void block4(const float* xi, const float* w, const Epi& ep, float* yo, const float* res, const Shape& s,
                     int64_t iw0, int64_t kh0, int64_t kh1, int64_t ih0, int64_t c, int k) {
    const int KW = KWT ? KWT : s.kw;
    const int64_t C = s.c, ldh = s.w * C, xs = s.sw * C, xd = s.dw * C;
    T a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
    for (int64_t kh = kh0; kh < kh1; ++kh) {
      const float* xr = xi + (ih0 + kh * s.dh) * ldh + iw0 * C + c;
      const float* wr = w + kh * KW * C + c;
      for (int kw = 0; kw < KW; ++kw) {
        const T wv = FULL ? V::load(wr + kw * C) : V::load_n(wr + kw * C, k);
        const float* p = xr + kw * xd;
        if (FULL) {
          a0 = V::fma(V::load(p), wv, a0);
          a1 = V::fma(V::load(p + xs), wv, a1);
          a2 = V::fma(V::load(p + 2 * xs), wv, a2);
          a3 = V::fma(V::load(p + 3 * xs), wv, a3);
        } else {
          a0 = V::fma(V::load_n(p, k), wv, a0);
          a1 = V::fma(V::load_n(p + xs, k), wv, a1);
          a2 = V::fma(V::load_n(p + 2 * xs, k), wv, a2);
          a3 = V::fma(V::load_n(p + 3 * xs, k), wv, a3);
        }
      }
    }
    const int64_t ldr = ep.ldr;
    a0 = epilogue(a0, ep, c, k, res);
    a1 = epilogue(a1, ep, c, k, res ? res + ldr : nullptr);
    a2 = epilogue(a2, ep, c, k, res ? res + 2 * ldr : nullptr);
    a3 = epilogue(a3, ep, c, k, res ? res + 3 * ldr : nullptr);
    if (FULL) {
      V::store(yo + c, a0); V::store(yo + C + c, a1); V::store(yo + 2 * C + c, a2); V::store(yo + 3 * C + c, a3);
    } else {
      V::store_n(yo + c, a0, k); V::store_n(yo + C + c, a1, k);
      V::store_n(yo + 2 * C + c, a2, k); V::store_n(yo + 3 * C + c, a3, k);
    }
  }

  // One output pixel, taps clipped to [kw0, kw1).
  static void pixel(const float* xi, const float* w, const Epi& ep, float* yo, const float* res, const Shape& s,
                    int64_t iw0, int64_t kh0, int64_t kh1, int64_t ih0, int64_t kw0, int64_t kw1) {
    const int64_t C = s.c, ldh = s.w * C;
    for (int64_t c = 0; c < C; c += V::W) {
      const int k = static_cast<int>(C - c < V::W ? C - c : V::W);
      T a = V::zero();
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        const float* xr = xi + (ih0 + kh * s.dh) * ldh + c;
        const float* wr = w + kh * s.kw * C + c;
        for (int64_t kw = kw0; kw < kw1; ++kw)
          a = V::fma(V::load_n(xr + (iw0 + kw * s.dw) * C, k), V::load_n(wr + kw * C, k), a);
      }
      V::store_n(yo + c, epilogue(a, ep, c, k, res), k);
    }
  }

  template <int KWT>
  static void rows_t(const float* x, const float* w, const Epi& ep, float* y, const Shape& s, int64_t r0,
                     int64_t r1) {
    const int64_t C = s.c, OW = s.ow;
    const int KW = KWT ? KWT : s.kw;
    // Interior pixels: every kw tap inside the image.
    int64_t ow_lo = s.pl > 0 ? (s.pl + s.sw - 1) / s.sw : 0;
    int64_t ow_hi = OW;  // exclusive
    {
      // need ow*sw - pl + (KW-1)*dw <= W-1
      const int64_t lim = s.w - 1 + s.pl - static_cast<int64_t>(KW - 1) * s.dw;
      ow_hi = lim < 0 ? 0 : lim / s.sw + 1;
      if (ow_hi > OW) ow_hi = OW;
      if (ow_lo > ow_hi) ow_lo = ow_hi;
    }
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / s.oh, oh = r % s.oh;
      const float* xi = x + n * s.h * s.w * C;
      float* yr = y + r * OW * C;
      const int64_t ih0 = oh * s.sh - s.pt;
      int64_t kh0 = 0, kh1 = s.kh;
      while (kh0 < kh1 && ih0 + kh0 * s.dh < 0) ++kh0;
      while (kh1 > kh0 && ih0 + (kh1 - 1) * s.dh >= s.h) --kh1;
      const float* resr = ep.residual ? ep.residual + r * OW * ep.ldr : nullptr;
      auto border = [&](int64_t ow) {
        const int64_t iw0 = ow * s.sw - s.pl;
        int64_t kw0 = 0, kw1 = KW;
        while (kw0 < kw1 && iw0 + kw0 * s.dw < 0) ++kw0;
        while (kw1 > kw0 && iw0 + (kw1 - 1) * s.dw >= s.w) --kw1;
        pixel(xi, w, ep, yr + ow * C, resr ? resr + ow * ep.ldr : nullptr, s, iw0, kh0, kh1, ih0, kw0, kw1);
      };
      int64_t ow = 0;
      for (; ow < ow_lo; ++ow) border(ow);
      for (; ow + PB <= ow_hi; ow += PB) {
        const int64_t iw0 = ow * s.sw - s.pl;
        const float* res = resr ? resr + ow * ep.ldr : nullptr;
        int64_t c = 0;
        for (; c + V::W <= C; c += V::W)
          block4<KWT, true>(xi, w, ep, yr + ow * C, res, s, iw0, kh0, kh1, ih0, c, V::W);
        if (c < C) block4<KWT, false>(xi, w, ep, yr + ow * C, res, s, iw0, kh0, kh1, ih0, c, static_cast<int>(C - c));
      }
      for (; ow < OW; ++ow) border(ow);
      row_act(yr, OW * C, ep);
    }
  }

  // ---- 3x3, dilation 1, stride S: channel vector outer, weights held in
  // registers for the whole output row, P pixels per block sharing their
  // input loads ((P-1)*S + 3 loads per kernel row instead of 3P). Kernel rows
  // [kh0, kh1) lie inside the image (clipped once per output row); EDGE blocks
  // (the first / last of a row) read input columns outside [0, W) as zeros, so
  // border pixels run in blocks too instead of one latency-bound chain each.
  template <int S, int P, bool FULL, bool EDGE>
  static void row3x3_block(const float* xi, const T (&wv)[3][3], const EpiVec& ev, const Epi& ep, float* yo,
                           const float* res, const Shape& s, int64_t iw0, int64_t ih0, int kh0, int kh1, int64_t c,
                           int k, bool nt) {
    constexpr int NI = (P - 1) * S + 3;
    const int64_t C = s.c, ldh = s.w * C;
    // Every loop below is unrolled and indexes its arrays with constants (kernel rows outside
    // [kh0, kh1) are skipped by a test, not by the loop bounds): a single variable index would make
    // GCC keep wv / acc in a stack array, one extra load or store per FMA (measured: 28x28x64 at
    // 38 GF/s before, see rows3x3).
    T acc[P];
#pragma GCC unroll 8
    for (int b = 0; b < P; ++b) acc[b] = V::zero();
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; ++kh) {
      if (kh < kh0 || kh >= kh1) continue;
      const float* xr = xi + (ih0 + kh) * ldh + c;
      T in[NI];
#pragma GCC unroll 16
      for (int j = 0; j < NI; ++j) {
        const int64_t iw = iw0 + j;
        if (EDGE && (iw < 0 || iw >= s.w)) in[j] = V::zero();
        else in[j] = FULL ? V::load(xr + iw * C) : V::load_n(xr + iw * C, k);
      }
#pragma GCC unroll 8
      for (int b = 0; b < P; ++b)
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; ++kw) acc[b] = V::fma(in[b * S + kw], wv[kh][kw], acc[b]);
    }
    store_block<P, FULL>(acc, ev, ep.scale != nullptr, ep.bias != nullptr, ep, yo, res, C, c, k, nt);
  }

  template <int S, int P, bool FULL>
  static void block_any(int pb, bool edge, const float* xi, const T (&wv)[3][3], const EpiVec& ev, const Epi& ep, float* yo,
                        const float* res, const Shape& s, int64_t iw0, int64_t ih0, int kh0, int kh1, int64_t c,
                        int k, bool nt) {
    if (pb == P) {
      if (edge) row3x3_block<S, P, FULL, true>(xi, wv, ev, ep, yo, res, s, iw0, ih0, kh0, kh1, c, k, nt);
      else row3x3_block<S, P, FULL, false>(xi, wv, ev, ep, yo, res, s, iw0, ih0, kh0, kh1, c, k, nt);
    } else if (pb >= 4) {
      if (edge) row3x3_block<S, 4, FULL, true>(xi, wv, ev, ep, yo, res, s, iw0, ih0, kh0, kh1, c, k, nt);
      else row3x3_block<S, 4, FULL, false>(xi, wv, ev, ep, yo, res, s, iw0, ih0, kh0, kh1, c, k, nt);
    } else if (pb >= 2) {
      if (edge) row3x3_block<S, 2, FULL, true>(xi, wv, ev, ep, yo, res, s, iw0, ih0, kh0, kh1, c, k, nt);
      else row3x3_block<S, 2, FULL, false>(xi, wv, ev, ep, yo, res, s, iw0, ih0, kh0, kh1, c, k, nt);
    } else {
      if (edge) row3x3_block<S, 1, FULL, true>(xi, wv, ev, ep, yo, res, s, iw0, ih0, kh0, kh1, c, k, nt);
      else row3x3_block<S, 1, FULL, false>(xi, wv, ev, ep, yo, res, s, iw0, ih0, kh0, kh1, c, k, nt);
    }
  }

  // Output row r of a 3x3 kernel: its image's input, the output and residual rows, the first input
  // row and the kernel rows [kh0, kh1) that lie inside the image.
  struct Row3 {
    const float* xi;
    float* yr;
    const float* resr;
    int64_t oh, ih0;
    int kh0, kh1;
  };
  static Row3 row3(const float* x, float* y, const Epi& ep, const Shape& s, int64_t r) {
    Row3 q;
    const int64_t n = r / s.oh;
    q.oh = r % s.oh;
    q.xi = x + n * s.h * s.w * s.c;
    q.yr = y + r * s.ow * s.c;
    q.ih0 = q.oh * s.sh - s.pt;
    q.kh0 = 0;
    q.kh1 = 3;
    while (q.kh0 < q.kh1 && q.ih0 + q.kh0 < 0) ++q.kh0;
    while (q.kh1 > q.kh0 && q.ih0 + q.kh1 - 1 >= s.h) --q.kh1;
    q.resr = ep.residual ? ep.residual + r * s.ow * ep.ldr : nullptr;
    return q;
  }
  // The nine weight vectors of channels [c, c + k).
  static void load_w3(const float* w, int64_t C, int64_t c, int k, T (&wv)[3][3]) {
    for (int kh = 0; kh < 3; ++kh)
      for (int kw = 0; kw < 3; ++kw)
        wv[kh][kw] = k == V::W ? V::load(w + (kh * 3 + kw) * C + c) : V::load_n(w + (kh * 3 + kw) * C + c, k);
  }

  template <int S, int P>
  static void rows3x3(const float* x, const float* w, const Epi& ep, float* y, const Shape& s, int64_t r0,
                      int64_t r1, bool nt, bool pf) {
    static_assert(P == 8 || P == 4, "block sizes are P, 4, 2, 1");
    const int64_t C = s.c, OW = s.ow;
    // Blocks whose every tap column is inside the image start at ow >= ow_lo and end at <= ow_hi.
    const int64_t ow_lo = s.pl > 0 ? (s.pl + S - 1) / S : 0;
    const int64_t lim = s.w - 1 + s.pl - 2;  // last interior pixel: ow*S - pl + 2 <= W - 1
    const int64_t ow_hi = lim < 0 ? 0 : lim / S + 1;
    for (int64_t r = r0; r < r1; ++r) {
      const auto [xi, yr, resr, oh, ih0, kh0, kh1] = row3(x, y, ep, s, r);
      // Rows ih0+3 .. ih0+3+S-1 (those inside the image) are new in the next output row.
      const int64_t ldh = s.w * C;
      const int64_t pf0 = ih0 + 3 < 0 ? 0 : ih0 + 3;
      int64_t pf1 = ih0 + 3 + S;
      if (pf1 > s.h) pf1 = s.h;
      if (!pf || oh + 1 >= s.oh) pf1 = pf0;
      const int pf_rows = pf1 > pf0 ? static_cast<int>(pf1 - pf0) : 0;
      const float* pf_base = xi + pf0 * ldh;
      // Pixel blocks outer, channel vectors inner: each block reads its input pixels'
      // channels contiguously (a channel-outer sweep would stride through the three
      // input rows once per channel vector, which DRAM prefetching serves poorly once
      // the tensors leave the caches); the 9 weight vectors come from L1 per block.
      for (int64_t ow = 0; ow < OW;) {
        const int64_t rem = OW - ow;
        const int pb = rem >= P ? P : (rem >= 4 ? 4 : (rem >= 2 ? 2 : 1));
        const bool edge = ow < ow_lo || ow + pb > ow_hi;
        const float* res = resr ? resr + ow * ep.ldr : nullptr;
        if (pf_rows > 0) {
          // The input rows the next output row adds (kh = 3 .. 3+S-1 of this one), at this
          // block's columns: fetched into L2 a whole output row ahead of their use, so an
          // input that comes from DRAM (a big batch) streams in while this row computes.
          const int64_t c0 = ow * S - s.pl < 0 ? 0 : ow * S - s.pl;
          int64_t c1 = (ow + pb) * S - s.pl;  // the next block starts there
          if (c1 > s.w) c1 = s.w;
          if (ow + pb >= OW) c1 = s.w;  // the row's last block also takes the trailing columns
          for (int j = 0; j < pf_rows; ++j) {
            const char* a = reinterpret_cast<const char*>(pf_base + j * ldh + c0 * C);
            const char* b = reinterpret_cast<const char*>(pf_base + j * ldh + c1 * C);
            for (; a < b; a += 64) __builtin_prefetch(a, 0, 2);
          }
        }
        for (int64_t c = 0; c < C; c += V::W) {
          const int k = static_cast<int>(C - c < V::W ? C - c : V::W);
          T wv[3][3];
          load_w3(w, C, c, k, wv);
          const EpiVec ev = epi_vec(ep, c, k);
          if (k == V::W)
            block_any<S, P, true>(pb, edge, xi, wv, ev, ep, yr + ow * C, res, s, ow * S - s.pl, ih0, kh0, kh1, c, k, nt);
          else
            block_any<S, P, false>(pb, edge, xi, wv, ev, ep, yr + ow * C, res, s, ow * S - s.pl, ih0, kh0, kh1, c, k, nt);
        }
        ow += pb;
      }
      row_act(yr, OW * C, ep);
    }
    if (nt) St::fence();
  }

  // ---- 3x3, dilation 1, stride 1, 32 vector registers (AVX-512): channel vector outer, its nine
  // weights in registers for the whole output row, P pixels per block; each block carries the last
  // two input columns of every kernel row over to the next one, so it loads 3P new input vectors
  // (3(P + 2) in rows3x3, plus the nine weights per block). Same FMA order per output as
  // row3x3_block, so the same results. A full 64-byte vector store covers whole cache lines, so the
  // streaming stores of big outputs stay full-line writes in this order too.
  template <int P, bool FULL, bool EDGE>
  __attribute__((always_inline)) static void slide_block(const float* const (&xrow)[3], int kh0, int kh1,
                                                         T (&carry)[3][2], const T (&wv)[3][3], const EpiVec& ev,
                                                         bool scale, bool bias, const Epi& ep, float* yo,
                                                         const float* res, int64_t C, int64_t W, int64_t col0,
                                                         int64_t c, int k, bool nt) {
    T acc[P] = {};  // zeros
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; ++kh) {
      if (kh < kh0 || kh >= kh1) continue;
      T in[P + 2];
      in[0] = carry[kh][0];
      in[1] = carry[kh][1];
#pragma GCC unroll 8
      for (int j = 0; j < P; ++j) {
        const int64_t col = col0 + j;
        if (EDGE && (col < 0 || col >= W)) in[j + 2] = V::zero();
        else in[j + 2] = FULL ? V::load(xrow[kh] + col * C) : V::load_n(xrow[kh] + col * C, k);
      }
#pragma GCC unroll 8
      for (int b = 0; b < P; ++b)
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; ++kw) acc[b] = V::fma(in[b + kw], wv[kh][kw], acc[b]);
      carry[kh][0] = in[P];
      carry[kh][1] = in[P + 1];
    }
    store_block<P, FULL>(acc, ev, scale, bias, ep, yo, res, C, c, k, nt);
  }

  // pf_row: the input row the next output row adds (prefetched block by block, a row ahead), or null.
  template <bool FULL>
  static void slide_row(const float* const (&xrow)[3], int kh0, int kh1, const T (&wv)[3][3], const EpiVec& ev,
                        const Epi& ep, float* yr, const float* resr, const Shape& s, int64_t c, int k, bool nt,
                        const float* pf_row) {
    constexpr int P = kSlideP;
    const int64_t C = s.c, W = s.w, OW = s.ow;
    const bool scale = ep.scale != nullptr, bias = ep.bias != nullptr;
    // Input columns -pl and 1 - pl (zero outside the image) start the carry.
    T carry[3][2];
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; ++kh)
#pragma GCC unroll 2
      for (int j = 0; j < 2; ++j) {
        const int64_t col = j - s.pl;
        carry[kh][j] = (kh < kh0 || kh >= kh1 || col < 0 || col >= W)
                           ? V::zero()
                           : (FULL ? V::load(xrow[kh] + col * C) : V::load_n(xrow[kh] + col * C, k));
      }
    int64_t ow = 0;
    // Blocks whose new columns (ow - pl + 2 ..) all lie in the image run without column tests.
    for (; ow + P <= OW; ow += P) {
      const int64_t col0 = ow - s.pl + 2;
      const float* res = resr ? resr + ow * ep.ldr : nullptr;
      if (pf_row) {  // the next row's columns this block's new ones (every channel), into L2
        const int64_t a = col0 < 0 ? 0 : col0, b = ow + 2 * P <= OW ? (col0 + P < W ? col0 + P : W) : W;
        for (const char *p = reinterpret_cast<const char*>(pf_row + a * C), *e = reinterpret_cast<const char*>(pf_row + b * C);
             p < e; p += 64)
          __builtin_prefetch(p, 0, 2);
      }
      if (col0 >= 0 && col0 + P <= W)
        slide_block<P, FULL, false>(xrow, kh0, kh1, carry, wv, ev, scale, bias, ep, yr + ow * C, res, C, W, col0, c, k, nt);
      else
        slide_block<P, FULL, true>(xrow, kh0, kh1, carry, wv, ev, scale, bias, ep, yr + ow * C, res, C, W, col0, c, k, nt);
    }
    for (; ow < OW; ++ow) {  // the last OW mod P pixels one at a time, columns tested
      const float* res = resr ? resr + ow * ep.ldr : nullptr;
      slide_block<1, FULL, true>(xrow, kh0, kh1, carry, wv, ev, scale, bias, ep, yr + ow * C, res, C, W,
                                 ow - s.pl + 2, c, k, nt);
    }
  }

  static void rows3x3_slide(const float* x, const float* w, const Epi& ep, float* y, const Shape& s, int64_t r0,
                            int64_t r1, bool nt, bool pf) {
    const int64_t C = s.c, OW = s.ow, ldh = s.w * C;
    for (int64_t r = r0; r < r1; ++r) {
      const auto [xi, yr, resr, oh, ih0, kh0, kh1] = row3(x, y, ep, s, r);
      // The input row the next output row adds, fetched into L2 during the first channel pass, a
      // row ahead of its use (an input that comes from DRAM, a big batch, streams in meanwhile).
      const float* pf_row = pf && oh + 1 < s.oh && ih0 + 3 >= 0 && ih0 + 3 < s.h ? xi + (ih0 + 3) * ldh : nullptr;
      for (int64_t c = 0; c < C; c += V::W) {
        const int k = static_cast<int>(C - c < V::W ? C - c : V::W);
        T wv[3][3];
        load_w3(w, C, c, k, wv);
        const float* xrow[3];
        for (int kh = 0; kh < 3; ++kh) xrow[kh] = xi + (ih0 + kh) * ldh + c;  // used only for kh0 <= kh < kh1
        const EpiVec ev = epi_vec(ep, c, k);
        const float* pfr = c == 0 ? pf_row : nullptr;
        if (k == V::W) slide_row<true>(xrow, kh0, kh1, wv, ev, ep, yr, resr, s, c, k, nt, pfr);
        else slide_row<false>(xrow, kh0, kh1, wv, ev, ep, yr, resr, s, c, k, nt, pfr);
      }
      row_act(yr, OW * C, ep);
    }
    if (nt) St::fence();
  }

  static constexpr int kSlideP = 8;

  // Pixels per block: enough independent FMA chains, inputs + weights + accumulators in registers.
  static constexpr int kP1 = V::W >= 16 ? 8 : 4;
  static constexpr int kP2 = 4;

  static void rows(const float* x, const float* w, const Epi& ep, float* y, const Shape& s, int64_t r0, int64_t r1,
                   unsigned flags) {
    const bool k3 = s.kh == 3 && s.kw == 3 && s.dh == 1 && s.dw == 1;
    // Streaming stores need every full vector aligned: C a multiple of the width, y aligned;
    // transcendental activations re-read the row, so they keep it cached.
    const bool pf = flags & slimrt::kernels::kDwPrefetch;
    const bool nt = (flags & slimrt::kernels::kDwStream) && s.c % V::W == 0 &&
                    reinterpret_cast<uintptr_t>(y) % (sizeof(float) * V::W) == 0 &&
                    (ep.act == slimrt::Act::None || ep.act == slimrt::Act::Relu || ep.act == slimrt::Act::Relu6);
    if (k3 && s.sw == 1 && V::W >= 16 && s.ow >= 2 * kSlideP && !(flags & (slimrt::kernels::kDwStream | slimrt::kernels::kDwDramInput))) rows3x3_slide(x, w, ep, y, s, r0, r1, nt, pf);
    else if (k3 && s.sw == 1) rows3x3<1, kP1>(x, w, ep, y, s, r0, r1, nt, pf);
    else if (k3 && s.sw == 2) rows3x3<2, kP2>(x, w, ep, y, s, r0, r1, nt, pf);
    else if (s.kw == 3) rows_t<3>(x, w, ep, y, s, r0, r1);
    else rows_t<0>(x, w, ep, y, s, r0, r1);
  }

  static slimrt::kernels::DwConvKernels table() { return {V::name(), &rows}; }
};

}  // namespace

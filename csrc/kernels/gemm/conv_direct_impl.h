// Generic body of the direct NHWC convolution (conv_direct.h) over the Vec
// interface (eltwise/vec_*.h); instantiated by conv_direct_avx2.cpp and
// conv_direct_avx512.cpp. Anonymous namespace: each ISA file keeps its own copy.
//
// Per output row (n, oh): the kh range is clipped once for the row; pixels whose
// kw taps all fall inside the image go in blocks of P (P accumulators per channel
// vector, one weight load per tap and channel shared by P pixels), the border
// pixels one at a time with their kw range clipped. The epilogue (scale, bias,
// residual and the piecewise-linear activations) runs in registers before the
// only store; transcendental activations (vmath.h) then run over the finished
// output row with full vectors (a row of OW*O floats, while it is in L1).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/eltwise/vmath.h"
#include "kernels/gemm/conv_direct.h"

namespace {

using slimrt::Act;
using slimrt::kernels::detail::DirectConv;

template <class V>
struct ConvDirect {
  using T = typename V::T;
  static constexpr int NB = V::W;
  // Pixels per block for 1 and 2 channel vectors: accumulators + weights + one
  // broadcast must fit the vector registers (32 zmm / 16 ymm), and the P input
  // pointers the general-purpose ones (more would spill them to the stack).
  static constexpr int P1 = 8;
  static constexpr int P2 = NB == 16 ? 8 : 6;

  static bool act_in_registers(Act act) {
    return act == Act::None || act == Act::Relu || act == Act::Relu6 || act == Act::LeakyRelu ||
           act == Act::HardSigmoid || act == Act::HardSwish;
  }

  static T simple_act(T x, Act act, T alpha) {
    switch (act) {
      case Act::Relu: return act_apply<V, Act::Relu>(x, alpha);
      case Act::Relu6: return act_apply<V, Act::Relu6>(x, alpha);
      case Act::LeakyRelu: return act_apply<V, Act::LeakyRelu>(x, alpha);
      case Act::HardSigmoid: return act_apply<V, Act::HardSigmoid>(x, alpha);
      case Act::HardSwish: return act_apply<V, Act::HardSwish>(x, alpha);
      default: return x;  // None, or applied over the finished row (row_act)
    }
  }

  // acc[p][v] += x[p*xs + j] * w[v*wstride + j*NB] for j < len: the reduction over one
  // contiguous run of input values (a (kw, c) run of one kernel row, or the channels of one tap).
  template <int P, int NV>
  __attribute__((always_inline)) static inline void run(T (&acc)[P][NV], const float* x, int64_t xs,
                                                        const float* w, int64_t wstride, int64_t len) {
    for (int64_t j = 0; j < len; ++j) {
      T wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = V::load(w + v * wstride + j * NB);
      for (int p = 0; p < P; ++p) {
        const T xv = V::set1(x[p * xs + j]);
        for (int v = 0; v < NV; ++v) acc[p][v] = V::fma(xv, wv[v], acc[p][v]);
      }
    }
  }

  // Where a row's input taps are: tap (kh, column iw) of channel c at
  // base + (kh - kh0)*row_stride + (iw + col_off)*ldx + c, for kh in [kh0, kh1).
  struct Src {
    const float* base;
    int64_t row_stride, ldx, col_off;
    int64_t kh0, kh1;
  };

  // P pixels starting at output pixel (row r, column ow), channel vectors
  // [o0, o0 + NV*NB) (the last one has `last` live lanes), taps kw in [kw0, kw1);
  // wb: the packed weights of channel block o0/NB.
  template <int P, int NV>
  static void block(const DirectConv& a, const Src& src, const float* wb, int64_t r, int64_t ow, int64_t o0,
                    int last, int64_t kw0, int64_t kw1) {
    const int64_t C = a.C, ldx = src.ldx, xs = a.sw * ldx;
    const int64_t wstride = a.KH * a.KW * C * NB;  // floats between channel blocks
    const int64_t iw0 = ow * a.sw - a.pl + src.col_off;
    T acc[P][NV];
    for (int p = 0; p < P; ++p)
      for (int v = 0; v < NV; ++v) acc[p][v] = V::zero();
    // Without dilation and with only this group's channels per pixel, a kernel row's
    // (kw, c) taps are one contiguous run of the input row.
    const bool contiguous = a.dw == 1 && ldx == C;
    for (int64_t kh = src.kh0; kh < src.kh1; ++kh) {
      const float* xr = src.base + (kh - src.kh0) * src.row_stride;
      const float* wr = wb + kh * a.KW * C * NB;
      if (contiguous) {
        run<P, NV>(acc, xr + (iw0 + kw0) * ldx, xs, wr + kw0 * C * NB, wstride, (kw1 - kw0) * C);
      } else {
        for (int64_t kw = kw0; kw < kw1; ++kw)
          run<P, NV>(acc, xr + (iw0 + kw * a.dw) * ldx, xs, wr + kw * C * NB, wstride, C);
      }
    }
    const T alpha = V::set1(a.alpha);
    const int64_t pix = r * a.OW + ow;
    T sc[NV], bi[NV];
    for (int v = 0; v < NV; ++v) {
      const int k = v + 1 == NV ? last : NB;
      sc[v] = a.scale ? V::load_n(a.scale + o0 + v * NB, k) : V::zero();
      bi[v] = a.bias ? V::load_n(a.bias + o0 + v * NB, k) : V::zero();
    }
    // Pixels in order, channel vectors in order: a partial last vector may be stored whole
    // (a.spill, see DirectConv) while it ends inside the output row -- masked stores are slow on
    // some CPUs (AVX2 vmaskmovps on AMD) and the spilled lanes are the following pixels' first
    // channels, which their own stores overwrite right after.
    const int64_t row_end = a.OW * a.ldy;
    for (int p = 0; p < P; ++p) {
      const bool whole = a.spill && (ow + p) * a.ldy + o0 + NV * NB <= row_end;
      for (int v = 0; v < NV; ++v) {
        const int64_t o = o0 + v * NB;
        const int k = v + 1 == NV ? last : NB;
        T t = acc[p][v];
        if (a.scale) t = V::mul(t, sc[v]);
        if (a.bias) t = V::add(t, bi[v]);
        if (a.residual) t = V::add(t, V::load_n(a.residual + (pix + p) * a.ldr + o, k));
        t = simple_act(t, a.act, alpha);
        float* yp = a.y + (pix + p) * a.ldy + o;
        if (k == NB || whole) V::store(yp, t);
        else V::store_n(yp, t, k);
      }
    }
  }

  // A byte range fetched towards L2 a slice per pixel block (software prefetch): the input
  // rows the next output row adds, while this row computes (inputs that come from DRAM).
  struct Pf {
    const char* p = nullptr;
    const char* end = nullptr;
    int64_t step = 0;
    void tick() {
      const char* e = end - p > step ? p + step : end;
      for (; p < e; p += 64) __builtin_prefetch(p, 0, 2);
    }
    void tick_all() {
      for (; p < end; p += 64) __builtin_prefetch(p, 0, 2);
    }
  };

  // Output columns [ow0, ow1) whose kw taps all lie inside src's columns, in blocks
  // of P, then 4, 2, 1 pixels.
  template <int NV>
  static void span(const DirectConv& a, const Src& src, const float* wb, int64_t r, int64_t o0, int last,
                   int64_t ow0, int64_t ow1, Pf* pf) {
    constexpr int P = NV == 1 ? P1 : P2;
    int64_t ow = ow0;
    for (; ow + P <= ow1; ow += P) {
      block<P, NV>(a, src, wb, r, ow, o0, last, 0, a.KW);
      if (pf) pf->tick();
    }
    if (P > 4 && ow + 4 <= ow1) { block<4, NV>(a, src, wb, r, ow, o0, last, 0, a.KW); ow += 4; }
    if (ow + 2 <= ow1) { block<2, NV>(a, src, wb, r, ow, o0, last, 0, a.KW); ow += 2; }
    if (ow < ow1) block<1, NV>(a, src, wb, r, ow, o0, last, 0, a.KW);
  }

  // One output row from the image itself: border pixels (kw taps clipped) one at a time.
  template <int NV>
  static void row_in_place(const DirectConv& a, const Src& src, const float* wb, int64_t r, int64_t o0, int last,
                           int64_t ow_lo, int64_t ow_hi, Pf* pf) {
    auto border = [&](int64_t ow) {
      const int64_t iw0 = ow * a.sw - a.pl;
      int64_t kw0 = 0, kw1 = a.KW;
      while (kw0 < kw1 && iw0 + kw0 * a.dw < 0) ++kw0;
      while (kw1 > kw0 && iw0 + (kw1 - 1) * a.dw >= a.W) --kw1;
      block<1, NV>(a, src, wb, r, ow, o0, last, kw0, kw1);
    };
    int64_t ow = 0;
    for (; ow < ow_lo; ++ow) border(ow);
    span<NV>(a, src, wb, r, o0, last, ow_lo, ow_hi, pf);
    for (ow = ow_hi; ow < a.OW; ++ow) border(ow);
  }

  static std::vector<float>& band_buffer() {
    static thread_local std::vector<float> buf;
    return buf;
  }

  // ---- one input channel, few outputs (a grayscale image's first layer: LeNet's 28x28x1 -> 6) ----
  // A channel vector would hold O <= 8 live lanes and every pixel broadcast each of its K inputs;
  // instead acc[p][o] holds NB consecutive output pixels of channel o (p < PV pixel vectors), the
  // row's input pixels being consecutive floats: per tap PV loads, O weight broadcasts, PV*O FMAs.
  // The tile is then transposed to NHWC (masked permutes: output vector q of a pixel vector takes
  // element e = q*NB + l from channel e % O, pixel e / O) before the epilogue and contiguous stores.
  // Same per-element summation order as the channel-vector kernel: kh, kw ascending.
  static constexpr int PV = 2;

  static bool c1_applies(const DirectConv& a) {
    return a.C == 1 && a.ldx == 1 && a.sw == 1 && a.dw == 1 && a.O <= NB && a.ldy == a.O &&
           (!a.residual || a.ldr == a.O);
  }

  // (8-lane instance only: conv2d.cpp packs <= 8 outputs per group at width 8, for the AVX2 kernels.)
  // x lanes gathered by idx; lanes of `mask` that are -1 take `from`, the others keep `into`.
  static T permute(T x, const int32_t* idx) {
    return _mm256_permutevar8x32_ps(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)));
  }
  static T merge(T into, T from, const int32_t* mask) {
    return _mm256_blendv_ps(into, from, _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mask))));
  }

  template <int O>
  static void rows_c1_o(const DirectConv& a, int64_t r0, int64_t r1) {
    constexpr int BP = PV * NB;  // pixels per block
    const int64_t KW = a.KW, blocks = (a.OW + BP - 1) / BP;
    // Band row: image columns [-pl, blocks*BP - pl + KW - 1), zeros outside the image.
    const int64_t bw = blocks * BP + KW - 1;
    std::vector<float>& b = band_buffer();
    if (b.size() < static_cast<size_t>(a.KH * bw)) b.resize(a.KH * bw);
    float* band = b.data();
    // Transposition tables: for output vector q (of O), lane l: pixel (q*NB + l) / O, channel (q*NB + l) % O.
    alignas(64) int32_t idx[O][NB], msk[O][O][NB];
    for (int q = 0; q < O; ++q)
      for (int l = 0; l < NB; ++l) {
        idx[q][l] = (q * NB + l) / O;
        for (int c = 0; c < O; ++c) msk[q][c][l] = (q * NB + l) % O == c ? -1 : 0;
      }
    const T alpha = V::set1(a.alpha);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / a.OH, ih0 = (r % a.OH) * a.sh - a.pt;
      int64_t kh0 = 0, kh1 = a.KH;
      while (kh0 < kh1 && ih0 + kh0 * a.dh < 0) ++kh0;
      while (kh1 > kh0 && ih0 + (kh1 - 1) * a.dh >= a.H) --kh1;
      const int64_t c0 = std::min<int64_t>(a.pl, bw), c1 = std::max(c0, std::min<int64_t>(bw, a.W + a.pl));
      for (int64_t kh = kh0; kh < kh1; ++kh) {
        float* d = band + kh * bw;
        const float* src = a.x + (n * a.H + ih0 + kh * a.dh) * a.W;
        std::fill(d, d + c0, 0.f);
        std::copy(src, src + (c1 - c0), d + c0);
        std::fill(d + c1, d + bw, 0.f);
      }
      float* yr = a.y + r * a.OW * a.O;
      const float* rr = a.residual ? a.residual + r * a.OW * a.O : nullptr;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t ow0 = blk * BP;
        T acc[PV][O];
        #pragma GCC unroll 8
        for (int p = 0; p < PV; ++p)
          #pragma GCC unroll 8
          for (int o = 0; o < O; ++o) acc[p][o] = V::zero();
        for (int64_t kh = kh0; kh < kh1; ++kh) {
          const float* xr = band + kh * bw + ow0;
          const float* wr = a.w + kh * KW * NB;  // packed [kh][kw][c = 0][NB]
          for (int64_t kw = 0; kw < KW; ++kw) {
            T xv[PV];
            #pragma GCC unroll 8
            for (int p = 0; p < PV; ++p) xv[p] = V::load(xr + kw + p * NB);
            #pragma GCC unroll 8
            for (int o = 0; o < O; ++o) {
              const T wv = V::set1(wr[kw * NB + o]);
              #pragma GCC unroll 8
              for (int p = 0; p < PV; ++p) acc[p][o] = V::fma(xv[p], wv, acc[p][o]);
            }
          }
        }
        // scale and bias per channel, before the transposition
        #pragma GCC unroll 8
        for (int o = 0; o < O; ++o) {
          const T sc = V::set1(a.scale ? a.scale[o] : 1.f), bi = V::set1(a.bias ? a.bias[o] : 0.f);
          #pragma GCC unroll 8
          for (int p = 0; p < PV; ++p) {
            if (a.scale) acc[p][o] = V::mul(acc[p][o], sc);
            if (a.bias) acc[p][o] = V::add(acc[p][o], bi);
          }
        }
        const int64_t npix = std::min<int64_t>(BP, a.OW - ow0);
        #pragma GCC unroll 8
        for (int p = 0; p < PV; ++p) {
          const int64_t elems = (std::min<int64_t>(npix, (p + 1) * NB) - p * NB) * O;  // live floats of this vector
          if (elems <= 0) break;
          float* yp = yr + (ow0 + p * NB) * O;
          const float* rp = rr ? rr + (ow0 + p * NB) * O : nullptr;
          #pragma GCC unroll 8
          for (int q = 0; q < O; ++q) {
            const int k = static_cast<int>(std::min<int64_t>(NB, elems - q * NB));
            if (k <= 0) break;
            T v = permute(acc[p][0], idx[q]);
            #pragma GCC unroll 8
            for (int c = 1; c < O; ++c) v = merge(v, permute(acc[p][c], idx[q]), msk[q][c]);
            if (rp) v = V::add(v, k == NB ? V::load(rp + q * NB) : V::load_n(rp + q * NB, k));
            v = simple_act(v, a.act, alpha);
            if (k == NB) V::store(yp + q * NB, v);
            else V::store_n(yp + q * NB, v, k);
          }
        }
      }
      if (!act_in_registers(a.act)) act_any<V>(yr, yr, a.OW * a.O, a.act, a.alpha);
    }
  }

  static void rows_c1(const DirectConv& a, int64_t r0, int64_t r1) {
    switch (a.O) {
      case 1: return rows_c1_o<1>(a, r0, r1);
      case 2: return rows_c1_o<2>(a, r0, r1);
      case 3: return rows_c1_o<3>(a, r0, r1);
      case 4: return rows_c1_o<4>(a, r0, r1);
      case 5: return rows_c1_o<5>(a, r0, r1);
      case 6: return rows_c1_o<6>(a, r0, r1);
      case 7: return rows_c1_o<7>(a, r0, r1);
      default: return rows_c1_o<8>(a, r0, r1);
    }
  }

  // Rows [r0, r1). With left/right padding, the row's KH input rows (this group's
  // channels) are first copied into a zero-padded band, so every pixel of the row
  // runs in full blocks; without it the image is read in place.
  static void rows(const DirectConv& a, int64_t r0, int64_t r1) {
    if constexpr (NB == 8) {
      if (c1_applies(a)) return rows_c1(a, r0, r1);
    }
    // Columns whose taps all lie inside the image: ow*sw - pl >= 0, ow*sw - pl + (KW-1)*dw <= W-1.
    int64_t ow_lo = a.pl > 0 ? (a.pl + a.sw - 1) / a.sw : 0;
    const int64_t lim = a.W - 1 + a.pl - (a.KW - 1) * a.dw;
    int64_t ow_hi = lim < 0 ? 0 : lim / a.sw + 1;
    if (ow_hi > a.OW) ow_hi = a.OW;
    if (ow_lo > ow_hi) ow_lo = ow_hi;
    const bool use_band = ow_lo > 0 || ow_hi < a.OW;
    // Band columns: [-pl, (OW-1)*sw - pl + (KW-1)*dw] of the image.
    const int64_t bw = (a.OW - 1) * a.sw + (a.KW - 1) * a.dw + 1;
    const int64_t C = a.C;
    float* band = nullptr;
    if (use_band) {
      std::vector<float>& b = band_buffer();
      if (b.size() < static_cast<size_t>(a.KH * bw * C)) b.resize(a.KH * bw * C);
      band = b.data();
    }
    const int64_t nblk = (a.O + NB - 1) / NB;
    const int64_t wstride = a.KH * a.KW * C * NB;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / a.OH, ih0 = (r % a.OH) * a.sh - a.pt;
      int64_t kh0 = 0, kh1 = a.KH;
      while (kh0 < kh1 && ih0 + kh0 * a.dh < 0) ++kh0;
      while (kh1 > kh0 && ih0 + (kh1 - 1) * a.dh >= a.H) --kh1;
      const float* ximg = a.x + n * a.H * a.W * a.ldx;
      Pf pf;
      if (a.prefetch && a.dh == 1 && r + 1 < r1) {
        // Input rows [lo, hi) of the next output row that this row does not read.
        const int64_t n1 = (r + 1) / a.OH, ih1 = ((r + 1) % a.OH) * a.sh - a.pt;
        int64_t lo = std::max<int64_t>(0, ih1), hi = std::min<int64_t>(a.H, ih1 + a.KH);
        if (n1 == n) lo = std::max(lo, ih0 + a.KH);
        if (hi > lo) {
          const float* xn = a.x + (n1 * a.H + lo) * a.W * a.ldx;
          pf.p = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(xn) & ~uintptr_t{63});
          pf.end = reinterpret_cast<const char*>(xn + (hi - lo) * a.W * a.ldx);
          pf.step = std::max<int64_t>(64, (pf.end - pf.p) / std::max<int64_t>(1, a.OW / P2));
        }
      }
      if (a.residual && r + 1 < r1) {
        // The next row's residual (a residual block's input, often from DRAM), towards L2 while
        // this row computes: unfetched, its lines stalled the epilogue.
        Pf rf;
        rf.p = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(a.residual + (r + 1) * a.OW * a.ldr) &
                                             ~uintptr_t{63});
        rf.end = reinterpret_cast<const char*>(a.residual + (r + 2) * a.OW * a.ldr);
        rf.tick_all();
      }
      Src src;
      if (use_band) {
        // in-image columns of the band: iw in [max(0, -pl), min(W, bw - pl))
        // band column col holds image column col - pl
        const int64_t c0 = std::min<int64_t>(a.pl, bw), c1 = std::max(c0, std::min<int64_t>(bw, a.W + a.pl));
        for (int64_t kh = kh0; kh < kh1; ++kh) {
          float* d = band + kh * bw * C;
          const float* s = ximg + (ih0 + kh * a.dh) * a.W * a.ldx;
          std::fill(d, d + c0 * C, 0.f);
          if (C == a.ldx) {
            std::copy(s, s + (c1 - c0) * C, d + c0 * C);
          } else {
            for (int64_t col = c0; col < c1; ++col) std::copy(s + (col - c0) * a.ldx, s + (col - c0) * a.ldx + C, d + col * C);
          }
          std::fill(d + c1 * C, d + bw * C, 0.f);
        }
        src = Src{band + kh0 * bw * C, bw * C, C, a.pl, kh0, kh1};
      } else {
        src = Src{ximg + (ih0 + kh0 * a.dh) * a.W * a.ldx, a.dh * a.W * a.ldx, a.ldx, 0, kh0, kh1};
      }
      for (int64_t b = 0; b < nblk; b += 2) {
        const int nv = nblk - b >= 2 ? 2 : 1;
        const int64_t o0 = b * NB;
        const int last = static_cast<int>(a.O - (b + nv - 1) * NB < NB ? a.O - (b + nv - 1) * NB : NB);
        const float* wb = a.w + b * wstride;
        if (use_band) {
          if (nv == 2) span<2>(a, src, wb, r, o0, last, 0, a.OW, b == 0 ? &pf : nullptr);
          else span<1>(a, src, wb, r, o0, last, 0, a.OW, b == 0 ? &pf : nullptr);
        } else {
          if (nv == 2) row_in_place<2>(a, src, wb, r, o0, last, ow_lo, ow_hi, b == 0 ? &pf : nullptr);
          else row_in_place<1>(a, src, wb, r, o0, last, ow_lo, ow_hi, b == 0 ? &pf : nullptr);
        }
        pf.tick_all();
      }
      if (!act_in_registers(a.act)) {  // transcendental activations: full vectors over the finished row
        float* yr = a.y + r * a.OW * a.ldy;
        if (a.ldy == a.O) act_any<V>(yr, yr, a.OW * a.O, a.act, a.alpha);
        else
          for (int64_t ow = 0; ow < a.OW; ++ow) act_any<V>(yr + ow * a.ldy, yr + ow * a.ldy, a.O, a.act, a.alpha);
      }
    }
  }
};

}  // namespace

// The bodies of attention_head shared by every ISA (see attn.h for the equations). Included by one
// file per ISA, which instantiates F32AttnImpl<Vec> (fp32) and/or defines its int8 `Ops` and
// instantiates Q8AttnImpl<Ops>:
//   using V = Vec<ISA> (kernels/eltwise/vec_*.h);  using Code = uint8/int8/int16 code type;
//   static constexpr int G;          reduction group of the dot kernel (4 vnni, 2 vpmaddwd)
//   static constexpr int32_t kAOff;  added to signed q codes (vnni: 128, making them u8)
//   template <class T> static void quant(const float* x, int64_t n, float inv, const float* invv,
//                                        int32_t off, T* out)   out[i] = rint(x[i] * (invv ? invv[i] : inv)) + off
//   static void pack_v(const float* const rows[G], const float* invv, int64_t D, Code* dst)
//                                     dst[d*G + t] = rint(rows[t][d] * invv[d]) (0 for a null row), d < D
//   using I = the ISA's integer vector of L int32 lanes, with
//     zero(), load(p) / load_n(p, n) (int32 lanes; n < L masked), bcast(int32), step(acc, a, b) (acc + the
//     lane's G products of a's and b's codes: vpdpbusd / vpmaddwd + add), store(p, v) / store_n(p, v, n),
//     sub(a, b), mullo(a, b), to_float(v) (-> V::T)
// The integer products and the rescaling (dot, scale_row) are written once below over these primitives.
// Anonymous namespace: each ISA file gets its own copy.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attn/attn.h"
#include "kernels/eltwise/vmath.h"

namespace {

// fp32: scores = q k^T (k transposed into the workspace), softmax, y = P v. A block is R rows x C
// vectors of columns; out[r][n] = sum_{t<kk} a[r*lda + t] * b[t*ldb + n]. Both products are bound by
// loads (a vector of b and a broadcast of a per R*C FMAs would be 1 FMA per cycle at R = C = 4), so
// q k^T takes 4 rows x 4 vectors of keys and P v (only D = 2 vectors wide at head size 32 on
// AVX-512) 8 rows x 2 vectors.
constexpr int64_t kAttnRowBlock = 16;  // query rows per block of the fp32 head (a multiple of 8: RP)

template <class V>
struct F32AttnImpl {
  using T = typename V::T;

  // One block; the last vector holds `last` (1..W) columns.
  template <int R, int C>
  static void block(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t kk, float* out, int64_t ldo,
                    int last) {
    // Loops unrolled: a rolled one would keep acc in a stack array (stored and reloaded per call).
    T acc[R][C];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) acc[r][c] = V::zero();
    for (int64_t t = 0; t < kk; ++t) {
      T bv[C];
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c)
        bv[c] = c + 1 < C || last == V::W ? V::load(b + t * ldb + c * V::W) : V::load_n(b + t * ldb + c * V::W, last);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const T av = V::set1(a[r * lda + t]);
#pragma GCC unroll 8
        for (int c = 0; c < C; ++c) acc[r][c] = V::fma(av, bv[c], acc[r][c]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) {
        if (c + 1 < C || last == V::W) V::store(out + r * ldo + c * V::W, acc[r][c]);
        else V::store_n(out + r * ldo + c * V::W, acc[r][c], last);
      }
  }

  // Rows [0, R) of the product over all N columns: chunks of C vectors, then one partial chunk.
  template <int R, int C>
  static void row_block(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t kk, int64_t N, float* out,
                        int64_t ldo) {
    int64_t n0 = 0;
    for (; n0 + C * V::W <= N; n0 += C * V::W) block<R, C>(a, lda, b + n0, ldb, kk, out + n0, ldo, V::W);
    const int64_t rem = N - n0;
    if (rem <= 0) return;
    const int nv = static_cast<int>((rem + V::W - 1) / V::W), last = static_cast<int>(rem - (nv - 1) * V::W);
    if constexpr (C > 1) {
      if (nv >= 2) {
        if constexpr (C > 2) {
          if (nv >= 3) {
            if constexpr (C > 3) {
              if (nv >= 4) return block<R, 4>(a, lda, b + n0, ldb, kk, out + n0, ldo, last);
            }
            return block<R, 3>(a, lda, b + n0, ldb, kk, out + n0, ldo, last);
          }
        }
        return block<R, 2>(a, lda, b + n0, ldb, kk, out + n0, ldo, last);
      }
    }
    block<R, 1>(a, lda, b + n0, ldb, kk, out + n0, ldo, last);
  }

  // All M rows: blocks of RM rows, the remainder one row at a time.
  template <int RM, int C>
  static void product(int64_t M, const float* a, int64_t lda, const float* b, int64_t ldb, int64_t kk, int64_t N,
                      float* out, int64_t ldo) {
    int64_t i = 0;
    for (; i + RM <= M; i += RM) row_block<RM, C>(a + i * lda, lda, b, ldb, kk, N, out + i * ldo, ldo);
    for (; i < M; ++i) row_block<1, C>(a + i * lda, lda, b, ldb, kk, N, out + i * ldo, ldo);
  }

  static void head(const slimrt::kernels::AttnHead& h, void* ws, const slimrt::kernels::EltwiseKernels& kt) {
    const int64_t Sq = h.Sq, Sk = h.Sk, D = h.D;
    constexpr int RP = V::W >= 16 ? 8 : 4;  // P v rows per block (AVX2 has 16 registers)
    float* kT = static_cast<float*>(ws);                                  // [D][Sk]
    float* scores = kT + (D * Sk + 15) / 16 * 16;                         // [Sq][Sk]
    kt.transpose2d(h.k, h.ldk, kT, Sk, Sk, D);
    // query rows in blocks, each block's scores produced, normalised and consumed while they are in L1
    // (a 128 x 128 head's full scores are 64 KB); every row's sums are the same as in one pass
    const int64_t RB = kAttnRowBlock;
    for (int64_t i0 = 0; i0 < Sq; i0 += RB) {
      const int64_t rb = std::min(RB, Sq - i0);
      product<4, (V::W >= 16 ? 4 : 2)>(rb, h.q + i0 * h.ldq, h.ldq, kT, Sk, D, Sk, scores + i0 * Sk, Sk);
      kt.softmax(scores, scores, i0, i0 + rb, Sk, h.scale, h.mask);
      product<RP, 2>(rb, scores + i0 * Sk, Sk, h.v, h.ldv, Sk, D, h.y + i0 * h.ldy, h.ldy);
    }
  }
};

template <class Ops>
struct Q8AttnImpl {
  using V = typename Ops::V;
  using Code = typename Ops::Code;
  using I = typename Ops::I;
  using IT = typename I::T;
  static constexpr int G = Ops::G;
  static constexpr int L = I::L;

  static int32_t group(const Code* p) {  // the G codes of one reduction group as one int32 lane value
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }

  // out[r*ldo + n] = sum_{g<kg, t<G} a[r*lda + g*G + t] * b[(g*N + n)*G + t], r < R, n < N: two vectors of
  // n per row (R*2 independent accumulators), then single (partial) vectors.
  template <int R>
  static void dot_r(const Code* a, int64_t lda, const Code* b, int64_t kg, int64_t N, int32_t* out, int64_t ldo) {
    int64_t n0 = 0;
    for (; n0 + 2 * L <= N; n0 += 2 * L) {
      IT acc[R][2];
      for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = I::zero();
      for (int64_t g = 0; g < kg; ++g) {
        const Code* bg = b + (g * N + n0) * G;
        const IT b0 = I::load(bg), b1 = I::load(bg + L * G);
        for (int r = 0; r < R; ++r) {
          const IT av = I::bcast(group(a + r * lda + g * G));
          acc[r][0] = I::step(acc[r][0], av, b0);
          acc[r][1] = I::step(acc[r][1], av, b1);
        }
      }
      for (int r = 0; r < R; ++r) {
        I::store(out + r * ldo + n0, acc[r][0]);
        I::store(out + r * ldo + n0 + L, acc[r][1]);
      }
    }
    for (; n0 < N; n0 += L) {
      const int w = static_cast<int>(N - n0 < L ? N - n0 : L);
      IT acc[R];
      for (int r = 0; r < R; ++r) acc[r] = I::zero();
      for (int64_t g = 0; g < kg; ++g) {
        const IT b0 = I::load_n(b + (g * N + n0) * G, w);
        for (int r = 0; r < R; ++r) acc[r] = I::step(acc[r], I::bcast(group(a + r * lda + g * G)), b0);
      }
      for (int r = 0; r < R; ++r) I::store_n(out + r * ldo + n0, acc[r], w);
    }
  }

  static void dot(const Code* a, int64_t lda, int R, const Code* b, int64_t kg, int64_t N, int32_t* out,
                  int64_t ldo) {
    switch (R) {
      case 4: dot_r<4>(a, lda, b, kg, N, out, ldo); break;
      case 3: dot_r<3>(a, lda, b, kg, N, out, ldo); break;
      case 2: dot_r<2>(a, lda, b, kg, N, out, ldo); break;
      default: dot_r<1>(a, lda, b, kg, N, out, ldo); break;
    }
  }

  // y[j] = float(acc[j] - off * corr[j]) * (a_scale * b_scale[j]), j < n (corr may be null)
  static void scale_row(const int32_t* acc, const int32_t* corr, int32_t off, float a_scale, const float* b_scale,
                        int64_t n, float* y) {
    const typename V::T as = V::set1(a_scale);
    const IT vo = I::bcast(off);
    for (int64_t j = 0; j < n; j += L) {
      const int w = static_cast<int>(n - j < L ? n - j : L);
      IT a = I::load_n(acc + j, w);
      if (corr) a = I::sub(a, I::mullo(vo, I::load_n(corr + j, w)));
      V::store_n(y + j, V::mul(I::to_float(a), V::mul(as, V::load_n(b_scale + j, w))), w);
    }
  }

  // max |x| over n floats; NaN when any x is not finite (x * 0 is NaN exactly then; max drops NaNs)
  static float max_abs(const float* x, int64_t n) {
    typename V::T m = V::zero(), z = V::zero();
    int64_t i = 0;
    for (; i + V::W <= n; i += V::W) {
      const typename V::T v = V::load(x + i);
      m = V::max(m, V::abs(v));
      z = V::add(z, V::mul(v, V::zero()));
    }
    if (i < n) {
      const typename V::T v = V::load_n(x + i, static_cast<int>(n - i));
      m = V::max(m, V::abs(v));
      z = V::add(z, V::mul(v, V::zero()));
    }
    return V::hsum(z) == 0.f ? V::hmax(m) : NAN;
  }

  // (scale, 1/step) of a symmetric code range [-levels, levels] over max |x| = m.
  static void scale_of(float m, float levels, float* s, float* inv) {
    if (!std::isfinite(m)) { *s = NAN; *inv = 0.f; }
    else if (m == 0.f) { *s = 0.f; *inv = 0.f; }
    else { *s = m / levels; *inv = levels / m; }
  }

  // x[j] = exp(x[j] * scale + mask[j] - max) in place; returns the sum (NaN when the max is not finite).
  static float exp_row(float* x, int64_t n, float scale, const float* mask) {
    using T = typename V::T;
    const T vs = V::set1(scale);
    auto value = [&](int64_t j, int k) {
      T v = V::mul(V::load_n(x + j, k), vs);
      return mask ? V::add(v, V::load_n(mask + j, k)) : v;
    };
    T m = V::set1(-INFINITY);
    int64_t j = 0;
    for (; j + V::W <= n; j += V::W) m = V::max(m, value(j, V::W));
    float mx = V::hmax(m);
    for (; j < n; ++j) mx = std::max(mx, x[j] * scale + (mask ? mask[j] : 0.f));
    if (!std::isfinite(mx)) return NAN;
    const T vm = V::set1(mx);
    T sum = V::zero();
    for (j = 0; j + V::W <= n; j += V::W) {
      const T e = VMath<V>::exp(V::sub(value(j, V::W), vm));
      V::store(x + j, e);
      sum = V::add(sum, e);
    }
    float s = V::hsum(sum);
    if (j < n) {
      const int k = static_cast<int>(n - j);
      const T e = VMath<V>::exp(V::sub(value(j, k), vm));
      float buf[V::W];
      V::store(buf, e);
      for (int l = 0; l < k; ++l) { x[j + l] = buf[l]; s += buf[l]; }
    }
    return s;
  }

  static void head(const slimrt::kernels::AttnHead& h, void* ws, const slimrt::kernels::EltwiseKernels& kt) {
    const int64_t Sq = h.Sq, Sk = h.Sk, D = h.D;
    const int64_t Dg = (D + G - 1) / G, Skg = (Sk + G - 1) / G, DG = Dg * G, SkG = Skg * G;
    const int64_t Lmax = Sk > D ? Sk : D;
    uint8_t* p = static_cast<uint8_t*>(ws);
    auto take = [&p](size_t bytes) { uint8_t* r = p; p += (bytes + 63) / 64 * 64; return r; };
    Code* kpack = reinterpret_cast<Code*>(take(sizeof(Code) * Dg * Sk * G));
    Code* vpack = reinterpret_cast<Code*>(take(sizeof(Code) * Skg * D * G));
    Code* row = reinterpret_cast<Code*>(take(sizeof(Code) * DG));
    int32_t* ksum = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * Sk));
    float* sk = reinterpret_cast<float*>(take(sizeof(float) * Sk));
    float* sv = reinterpret_cast<float*>(take(sizeof(float) * D));
    float* invv = reinterpret_cast<float*>(take(sizeof(float) * D));
    Code* qa = reinterpret_cast<Code*>(take(sizeof(Code) * 4 * DG));
    Code* pa = reinterpret_cast<Code*>(take(sizeof(Code) * 4 * SkG));
    int32_t* acc = reinterpret_cast<int32_t*>(take(sizeof(int32_t) * 4 * Lmax));
    float* scores = reinterpret_cast<float*>(take(sizeof(float) * Sq * Sk));
    std::memset(row, 0, sizeof(Code) * DG);
    std::memset(qa, 0, sizeof(Code) * 4 * DG);
    std::memset(pa, 0, sizeof(Code) * 4 * SkG);

    // K: per-row codes, packed [Dg][Sk][G]; ksum for the vnni offset correction.
    for (int64_t j = 0; j < Sk; ++j) {
      const float* x = h.k + j * h.ldk;
      float inv;
      scale_of(max_abs(x, D), 127.f, &sk[j], &inv);
      Ops::quant(x, D, inv, nullptr, 0, row);
      int32_t s = 0;
      for (int64_t d = 0; d < D; ++d) s += row[d];
      ksum[j] = s;
      for (int64_t g = 0; g < Dg; ++g) std::memcpy(kpack + (g * Sk + j) * G, row + g * G, sizeof(Code) * G);
    }
    // V: per-column codes, packed [Skg][D][G] (G consecutive keys per lane).
    {
      for (int64_t d0 = 0; d0 < D; d0 += V::W) {
        const int w = static_cast<int>(D - d0 < V::W ? D - d0 : V::W);
        typename V::T m = V::zero(), z = V::zero();
        for (int64_t j = 0; j < Sk; ++j) {
          const typename V::T v = V::load_n(h.v + j * h.ldv + d0, w);
          m = V::max(m, V::abs(v));
          z = V::add(z, V::mul(v, V::zero()));
        }
        float mt[V::W], zt[V::W];
        V::store_n(mt, m, w);
        V::store_n(zt, z, w);
        for (int l = 0; l < w; ++l) scale_of(zt[l] == 0.f ? mt[l] : NAN, 127.f, &sv[d0 + l], &invv[d0 + l]);
      }
      for (int64_t g = 0; g < Skg; ++g) {
        const float* rows[G];
        for (int t = 0; t < G; ++t) rows[t] = g * G + t < Sk ? h.v + (g * G + t) * h.ldv : nullptr;
        Ops::pack_v(rows, invv, D, vpack + g * D * G);
      }
    }
    // scores = (Q codes . K codes) * sq * sk, four query rows per dot call
    for (int64_t i0 = 0; i0 < Sq; i0 += 4) {
      const int R = static_cast<int>(Sq - i0 < 4 ? Sq - i0 : 4);
      float sq[4];
      for (int r = 0; r < R; ++r) {
        const float* x = h.q + (i0 + r) * h.ldq;
        float inv;
        scale_of(max_abs(x, D), 127.f, &sq[r], &inv);
        Ops::quant(x, D, inv, nullptr, Ops::kAOff, qa + r * DG);
      }
      dot(qa, DG, R, kpack, Dg, Sk, acc, Sk);
      for (int r = 0; r < R; ++r)
        scale_row(acc + r * Sk, Ops::kAOff ? ksum : nullptr, Ops::kAOff, sq[r], sk, Sk, scores + (i0 + r) * Sk);
    }
    // y = (P codes . V codes) * sp * sv. The softmax is fused with the codes of P: a row's largest
    // exp(v - max) is exactly 1, so max P = 1 / sum and P * 255 / max P = exp(v - max) * 255.
    for (int64_t i0 = 0; i0 < Sq; i0 += 4) {
      const int R = static_cast<int>(Sq - i0 < 4 ? Sq - i0 : 4);
      float sp[4];
      for (int r = 0; r < R; ++r) {
        const int64_t i = i0 + r;
        float* x = scores + i * Sk;
        const float* mrow = h.mask.data ? h.mask.data + ((i / h.mask.div) % h.mask.mod) * h.mask.stride : nullptr;
        sp[r] = 1.f / exp_row(x, Sk, h.scale, mrow) / 255.f;  // NaN row (all masked, NaN input): NaN out
        Ops::quant(x, Sk, 255.f, nullptr, 0, pa + r * SkG);
      }
      dot(pa, SkG, R, vpack, Skg, D, acc, D);
      for (int r = 0; r < R; ++r) scale_row(acc + r * D, nullptr, 0, sp[r], sv, D, h.y + (i0 + r) * h.ldy);
    }
  }
};

}  // namespace

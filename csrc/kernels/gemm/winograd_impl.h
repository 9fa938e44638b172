// Generic body of the Winograd F(4x4, 3x3) input and output transforms (winograd.h) over the Vec
// interface (eltwise/vec_*.h); instantiated by winograd_avx2.cpp and winograd_avx512.cpp.
// Anonymous namespace: each ISA file keeps its own copy.
//
// Both transforms are separable: a 1-D transform down each column of the 6x6 patch (into a small
// stack tile, L1), then along each row. Input: 36 loads (zeros outside the image) and 36 full-vector
// stores per channel vector (the buffer's rows are padded to a multiple of 16 floats, the tail
// lanes load as zeros). Output: 36 loads, the epilogue (scale, bias, residual, activation) in
// registers, masked stores of the pixels inside the image.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/eltwise/vmath.h"
#include "kernels/gemm/winograd.h"

namespace {

using slimrt::Act;
using slimrt::kernels::detail::WinoInput;
using slimrt::kernels::detail::WinoOutput;

template <class V>
struct Wino {
  using T = typename V::T;
  static constexpr int W = V::W;

  // r = B^T d (6 values).
  __attribute__((always_inline)) static inline void bt(const T (&d)[6], T (&r)[6]) {
    const T c4 = V::set1(4.f), c5 = V::set1(5.f), c2 = V::set1(2.f);
    const T t0 = V::fnma(c4, d[2], d[4]);  // d4 - 4 d2
    const T t1 = V::fnma(c4, d[1], d[3]);  // d3 - 4 d1
    const T t2 = V::sub(d[4], d[2]);
    const T t3 = V::mul(c2, V::sub(d[3], d[1]));
    r[0] = V::fma(c4, d[0], V::fnma(c5, d[2], d[4]));
    r[1] = V::add(t0, t1);
    r[2] = V::sub(t0, t1);
    r[3] = V::add(t2, t3);
    r[4] = V::sub(t2, t3);
    r[5] = V::fma(c4, d[1], V::fnma(c5, d[3], d[5]));
  }

  // r = A^T m (4 of 6 values).
  __attribute__((always_inline)) static inline void at(const T (&m)[6], T (&r)[4]) {
    const T s12 = V::add(m[1], m[2]), d12 = V::sub(m[1], m[2]);
    const T s34 = V::add(m[3], m[4]), d34 = V::sub(m[3], m[4]);
    r[0] = V::add(V::add(m[0], s12), s34);
    r[1] = V::fma(V::set1(2.f), d34, d12);
    r[2] = V::fma(V::set1(4.f), s34, s12);
    r[3] = V::add(V::fma(V::set1(8.f), d34, d12), m[5]);
  }

  static T activate(T x, Act act, T alpha) {
    switch (act) {
      case Act::None: return x;
      case Act::Relu: return act_apply<V, Act::Relu>(x, alpha);
      case Act::Relu6: return act_apply<V, Act::Relu6>(x, alpha);
      case Act::LeakyRelu: return act_apply<V, Act::LeakyRelu>(x, alpha);
      case Act::Sigmoid: return act_apply<V, Act::Sigmoid>(x, alpha);
      case Act::Tanh: return act_apply<V, Act::Tanh>(x, alpha);
      case Act::Gelu: return act_apply<V, Act::Gelu>(x, alpha);
      case Act::GeluTanh: return act_apply<V, Act::GeluTanh>(x, alpha);
      case Act::Silu: return act_apply<V, Act::Silu>(x, alpha);
      case Act::HardSwish: return act_apply<V, Act::HardSwish>(x, alpha);
      case Act::Elu: return act_apply<V, Act::Elu>(x, alpha);
      case Act::HardSigmoid: return act_apply<V, Act::HardSigmoid>(x, alpha);
    }
    return x;
  }

  static void input(const WinoInput& a, int64_t t0, int64_t t1) {
    const int64_t C = a.C, per_image = a.TH * a.TW;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / per_image, th = (t % per_image) / a.TW, tw = t % a.TW;
      const int64_t ih0 = th * 4 - a.pt, iw0 = tw * 4 - a.pl;
      // Row i of the patch: its input row's pixel iw0 (may lie outside the row), or null outside the image.
      const float* row[6];
      bool col_in[6];
      bool inside = true;
      #pragma GCC unroll 6
      for (int i = 0; i < 6; ++i) {
        const int64_t ih = ih0 + i, iw = iw0 + i;
        row[i] = ih >= 0 && ih < a.H ? a.x + ((n * a.H + ih) * a.W + iw0) * C : nullptr;
        col_in[i] = iw >= 0 && iw < a.W;
        inside = inside && row[i] && col_in[i];
      }
      float* vt = a.v + (t - t0) * a.ld;
      for (int64_t c0 = 0; c0 < C; c0 += W) {
        const int k = static_cast<int>(std::min<int64_t>(W, C - c0));
        T tmp[6][6];
        #pragma GCC unroll 6
        for (int j = 0; j < 6; ++j) {
          T d[6], r[6];
          #pragma GCC unroll 6
          for (int i = 0; i < 6; ++i) {
            if (inside && k == W) {
              d[i] = V::load(row[i] + j * C + c0);
            } else {
              d[i] = row[i] && col_in[j] ? V::load_n(row[i] + j * C + c0, k) : V::zero();
            }
          }
          bt(d, r);
          #pragma GCC unroll 6
          for (int i = 0; i < 6; ++i) tmp[i][j] = r[i];
        }
        #pragma GCC unroll 6
        for (int i = 0; i < 6; ++i) {
          T r[6];
          bt(tmp[i], r);
          #pragma GCC unroll 6
          for (int j = 0; j < 6; ++j) V::store(vt + (i * 6 + j) * a.plane + c0, r[j]);
        }
      }
    }
  }

  static void output(const WinoOutput& a, int64_t t0, int64_t t1) {
    const int64_t O = a.O, per_image = a.TH * a.TW;
    const T alpha = V::set1(a.alpha);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / per_image, th = (t % per_image) / a.TW, tw = t % a.TW;
      const int64_t oh0 = th * 4, ow0 = tw * 4;
      const int rows = static_cast<int>(std::min<int64_t>(4, a.OH - oh0));
      const int cols = static_cast<int>(std::min<int64_t>(4, a.OW - ow0));
      const int64_t p0 = (n * a.OH + oh0) * a.OW + ow0;  // output pixel of the tile's corner
      const float* mt = a.m + (t - t0) * a.ld;
      for (int64_t o0 = a.o_begin; o0 < a.o_end; o0 += W) {
        const int k = static_cast<int>(std::min<int64_t>(W, a.o_end - o0));
        T tmp[4][6];
        #pragma GCC unroll 6
        for (int j = 0; j < 6; ++j) {
          T m[6], r[4];
          #pragma GCC unroll 6
          for (int i = 0; i < 6; ++i) m[i] = V::load(mt + (i * 6 + j) * a.plane + o0);
          at(m, r);
          #pragma GCC unroll 4
          for (int i = 0; i < 4; ++i) tmp[i][j] = r[i];
        }
        const T sc = a.scale ? V::load_n(a.scale + o0, k) : V::set1(1.f);
        const T bi = a.bias ? V::load_n(a.bias + o0, k) : V::zero();
        #pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          if (i >= rows) break;
          T r[4];
          at(tmp[i], r);
          #pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) {
            if (j >= cols) break;
            const int64_t p = p0 + i * a.OW + j;
            T x = r[j];
            if (a.scale) x = V::mul(x, sc);
            if (a.bias) x = V::add(x, bi);
            if (a.residual) x = V::add(x, V::load_n(a.residual + p * a.ldr + o0, k));
            x = activate(x, a.act, alpha);
            if (k == W) V::store(a.y + p * O + o0, x);
            else V::store_n(a.y + p * O + o0, x, k);
          }
        }
      }
    }
  }
};

}  // namespace

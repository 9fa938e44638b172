// Generic bodies of the PoolKernels table (pool.h) over the Vec interface
// (eltwise/vec_scalar.h). Channel blocks of 4 vectors keep several
// independent max/add chains in flight; masked vectors cover the tail.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/pool/pool.h"

namespace {

template <class V>
struct PoolImpl {
  using T = typename V::T;
  using Shape = slimrt::kernels::Pool2dShape;
  static constexpr int64_t CB = 4 * V::W;  // channels per register block

  static int tail(int64_t left) { return static_cast<int>(left < V::W ? left : V::W); }

  // Reduces the window [h0,h1) x [w0,w1) of image plane `xp` into y for all channels.
  template <bool MAX>
  static void window(const float* xp, float* y, const Shape& s, int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                     float mul) {
    const int64_t C = s.c, ldh = s.w * s.c;
    const T init = MAX ? V::set1(-INFINITY) : V::zero();
    const T vm = V::set1(mul);
    int64_t c = 0;
    for (; c + CB <= C; c += CB) {
      T a0 = init, a1 = init, a2 = init, a3 = init;
      for (int64_t ih = h0; ih < h1; ++ih) {
        const float* xr = xp + ih * ldh + c;
        for (int64_t iw = w0; iw < w1; ++iw) {
          const float* p = xr + iw * C;
          if (MAX) {
            a0 = V::max(V::load(p), a0);
            a1 = V::max(V::load(p + V::W), a1);
            a2 = V::max(V::load(p + 2 * V::W), a2);
            a3 = V::max(V::load(p + 3 * V::W), a3);
          } else {
            a0 = V::add(a0, V::load(p));
            a1 = V::add(a1, V::load(p + V::W));
            a2 = V::add(a2, V::load(p + 2 * V::W));
            a3 = V::add(a3, V::load(p + 3 * V::W));
          }
        }
      }
      if (!MAX) { a0 = V::mul(a0, vm); a1 = V::mul(a1, vm); a2 = V::mul(a2, vm); a3 = V::mul(a3, vm); }
      V::store(y + c, a0);
      V::store(y + c + V::W, a1);
      V::store(y + c + 2 * V::W, a2);
      V::store(y + c + 3 * V::W, a3);
    }
    for (; c < C; c += V::W) {
      const int k = tail(C - c);
      T a = init;
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) {
          T v = V::load_n(xp + ih * ldh + iw * C + c, k);
          a = MAX ? V::max(v, a) : V::add(a, v);
        }
      if (!MAX) a = V::mul(a, vm);
      V::store_n(y + c, a, k);
    }
  }

  // <= one vector of channels (LeNet's 6): a pixel is one masked vector per tap, without the
  // channel-block loop of window() (89 -> 73 us for 64x28x28x6, 2x2).
  template <bool MAX>
  __attribute__((always_inline)) static inline void narrow_window(const float* xp, float* y, const Shape& s,
                                                                  int64_t h0, int64_t h1, int64_t w0, int64_t w1,
                                                                  float mul) {
    const int k = static_cast<int>(s.c);
    T a = MAX ? V::set1(-INFINITY) : V::zero();
    for (int64_t ih = h0; ih < h1; ++ih) {
      const float* p = xp + (ih * s.w + w0) * s.c;
      for (int64_t iw = w0; iw < w1; ++iw, p += s.c) {
        const T v = V::load_n(p, k);
        a = MAX ? V::max(v, a) : V::add(a, v);
      }
    }
    if (!MAX) a = V::mul(a, V::set1(mul));
    V::store_n(y, a, k);
  }

  template <bool MAX>
  static void pool2d(const float* x, float* y, const Shape& s, int64_t r0, int64_t r1) {
    const bool narrow = s.c <= V::W;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / s.oh, oh = r % s.oh;
      const float* xp = x + n * s.h * s.w * s.c;
      float* yr = y + r * s.ow * s.c;
      const int64_t hs = oh * s.sh - s.pt;
      const int64_t h0 = hs < 0 ? 0 : hs, h1 = hs + s.kh < s.h ? hs + s.kh : s.h;
      const int64_t hpad_end = hs + s.kh < s.h + s.pb ? hs + s.kh : s.h + s.pb;
      for (int64_t ow = 0; ow < s.ow; ++ow) {
        const int64_t ws = ow * s.sw - s.pl;
        const int64_t w0 = ws < 0 ? 0 : ws, w1 = ws + s.kw < s.w ? ws + s.kw : s.w;
        float mul = 1.f;
        if (!MAX) {
          int64_t cnt;
          if (s.count_include_pad) {
            const int64_t wpad_end = ws + s.kw < s.w + s.pr ? ws + s.kw : s.w + s.pr;
            cnt = (hpad_end - hs) * (wpad_end - ws);
          } else {
            cnt = (h1 > h0 && w1 > w0) ? (h1 - h0) * (w1 - w0) : 0;
          }
          mul = cnt > 0 ? 1.f / static_cast<float>(cnt) : 0.f;
        }
        if (narrow) narrow_window<MAX>(xp, yr + ow * s.c, s, h0, h1, w0, w1, mul);
        else window<MAX>(xp, yr + ow * s.c, s, h0, h1 > h0 ? h1 : h0, w0, w1 > w0 ? w1 : w0, mul);
      }
    }
  }

  static void max2d(const float* x, float* y, const Shape& s, int64_t r0, int64_t r1) { pool2d<true>(x, y, s, r0, r1); }
  static void avg2d(const float* x, float* y, const Shape& s, int64_t r0, int64_t r1) { pool2d<false>(x, y, s, r0, r1); }

  template <bool MAX>
  static void global(const float* x, float* y, int64_t hw, int64_t ldx, int64_t c0, int64_t c1) {
    const T init = MAX ? V::set1(-INFINITY) : V::zero();
    const T vm = V::set1(hw > 0 ? 1.f / static_cast<float>(hw) : 0.f);
    int64_t c = c0;
    for (; c + CB <= c1; c += CB) {
      T a0 = init, a1 = init, a2 = init, a3 = init;
      for (int64_t i = 0; i < hw; ++i) {
        const float* p = x + i * ldx + c;
        if (MAX) {
          a0 = V::max(V::load(p), a0);
          a1 = V::max(V::load(p + V::W), a1);
          a2 = V::max(V::load(p + 2 * V::W), a2);
          a3 = V::max(V::load(p + 3 * V::W), a3);
        } else {
          a0 = V::add(a0, V::load(p));
          a1 = V::add(a1, V::load(p + V::W));
          a2 = V::add(a2, V::load(p + 2 * V::W));
          a3 = V::add(a3, V::load(p + 3 * V::W));
        }
      }
      if (!MAX) { a0 = V::mul(a0, vm); a1 = V::mul(a1, vm); a2 = V::mul(a2, vm); a3 = V::mul(a3, vm); }
      V::store(y + c, a0);
      V::store(y + c + V::W, a1);
      V::store(y + c + 2 * V::W, a2);
      V::store(y + c + 3 * V::W, a3);
    }
    for (; c < c1; c += V::W) {
      const int k = tail(c1 - c);
      T a = init;
      for (int64_t i = 0; i < hw; ++i) {
        T v = V::load_n(x + i * ldx + c, k);
        a = MAX ? V::max(v, a) : V::add(a, v);
      }
      if (!MAX) a = V::mul(a, vm);
      V::store_n(y + c, a, k);
    }
  }

  static slimrt::kernels::PoolKernels table() {
    return {V::name(), &max2d, &avg2d, &global<true>, &global<false>};
  }
};

}  // namespace

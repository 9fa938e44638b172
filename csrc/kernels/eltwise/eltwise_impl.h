// Generic bodies of the EltwiseKernels table (eltwise.h), written once against
// the Vec interface (vec_scalar.h) and instantiated by eltwise_{scalar,avx2,avx512}.cpp.
// Anonymous namespace: each ISA file gets its own copy.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/eltwise/eltwise.h"
#include "kernels/eltwise/vmath.h"

namespace {

using slimrt::kernels::BinaryOp;
using slimrt::kernels::SoftmaxMask;

template <class V>
struct EltwiseImpl {
  using T = typename V::T;
  static int tail(int64_t left) { return static_cast<int>(left < V::W ? left : V::W); }

  static void act(const float* x, float* y, int64_t n, slimrt::Act a, float alpha) {
    act_any<V>(x, y, n, a, alpha);
  }

  static void prelu(const float* x, const float* slope, float* y, int64_t rows, int64_t c) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * c;
      float* yr = y + r * c;
      for (int64_t j = 0; j < c; j += V::W) {
        int k = tail(c - j);
        T v = V::load_n(xr + j, k);
        T s = V::load_n(slope + j, k);
        V::store_n(yr + j, V::select(V::ge(v, V::zero()), v, V::mul(v, s)), k);
      }
    }
  }

  template <BinaryOp OP>
  static T op(T a, T b) {
    if constexpr (OP == BinaryOp::Add) return V::add(a, b);
    if constexpr (OP == BinaryOp::Sub) return V::sub(a, b);
    if constexpr (OP == BinaryOp::Mul) return V::mul(a, b);
    return V::div(a, b);
  }

  // SA, SB: 1 = contiguous, 0 = broadcast scalar.
  template <BinaryOp OP, int SA, int SB>
  static void binary_loop(const float* a, const float* b, float* y, int64_t n) {
    const T ca = V::set1(a[0]), cb = V::set1(b[0]);
    int64_t i = 0;
    for (; i + 2 * V::W <= n; i += 2 * V::W) {
      T a0 = SA ? V::load(a + i) : ca, a1 = SA ? V::load(a + i + V::W) : ca;
      T b0 = SB ? V::load(b + i) : cb, b1 = SB ? V::load(b + i + V::W) : cb;
      V::store(y + i, op<OP>(a0, b0));
      V::store(y + i + V::W, op<OP>(a1, b1));
    }
    for (; i < n; i += V::W) {
      int k = tail(n - i);
      // Unused lanes hold 0 (0/0 = NaN there is never stored; FP exceptions stay masked).
      T a0 = SA ? V::load_n(a + i, k) : ca;
      T b0 = SB ? V::load_n(b + i, k) : cb;
      V::store_n(y + i, op<OP>(a0, b0), k);
    }
  }

  template <BinaryOp OP>
  static void binary_op(const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n) {
    if (sa && sb) binary_loop<OP, 1, 1>(a, b, y, n);
    else if (sa) binary_loop<OP, 1, 0>(a, b, y, n);
    else if (sb) binary_loop<OP, 0, 1>(a, b, y, n);
    else binary_loop<OP, 0, 0>(a, b, y, n);
  }

  static void binary(BinaryOp o, const float* a, int64_t sa, const float* b, int64_t sb, float* y,
                     int64_t n) {
    if (n <= 0) return;
    switch (o) {
      case BinaryOp::Add: return binary_op<BinaryOp::Add>(a, sa, b, sb, y, n);
      case BinaryOp::Sub: return binary_op<BinaryOp::Sub>(a, sa, b, sb, y, n);
      case BinaryOp::Mul: return binary_op<BinaryOp::Mul>(a, sa, b, sb, y, n);
      case BinaryOp::Div: return binary_op<BinaryOp::Div>(a, sa, b, sb, y, n);
    }
  }

  // v = x * scale + mask over one row, in three passes: max, exp+sum, normalise.
  static void softmax(const float* x, float* y, int64_t r0, int64_t r1, int64_t n, float scale,
                      const SoftmaxMask& mask) {
    const T vs = V::set1(scale);
    const T ninf = V::set1(-INFINITY);
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      const float* mr = mask.data ? mask.data + ((r / mask.div) % mask.mod) * mask.stride : nullptr;
      auto value = [&](int64_t j, int k) {
        T v = V::mul(V::load_n(xr + j, k), vs);
        return mr ? V::add(v, V::load_n(mr + j, k)) : v;
      };
      T m = ninf;
      int64_t j = 0;
      for (; j + V::W <= n; j += V::W) m = V::max(m, value(j, V::W));
      if (j < n) {
        int k = tail(n - j);
        T v = value(j, k);
        // unused lanes -> -inf (load_n zero-fills them)
        float buf[V::W];
        V::store(buf, v);
        for (int l = k; l < V::W; ++l) buf[l] = -INFINITY;
        m = V::max(m, V::load(buf));
      }
      const float mx = V::hmax(m);
      // All -inf row: exp(-inf - -inf) = NaN, as torch. Finite max otherwise.
      const T vm = V::set1(mx);
      T sum = V::zero();
      for (j = 0; j < n; j += V::W) {
        int k = tail(n - j);
        T e = VMath<V>::exp(V::sub(value(j, k), vm));
        if (k < V::W) {
          float buf[V::W];
          V::store(buf, e);
          for (int l = k; l < V::W; ++l) buf[l] = 0.f;
          e = V::load(buf);
        }
        V::store_n(yr + j, e, k);
        sum = V::add(sum, e);
      }
      const T inv = V::set1(1.f / V::hsum(sum));
      for (j = 0; j < n; j += V::W) {
        int k = tail(n - j);
        V::store_n(yr + j, V::mul(V::load_n(yr + j, k), inv), k);
      }
    }
  }

  static void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t r0,
                         int64_t r1, int64_t n, float eps) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      T s = V::zero();
      for (int64_t j = 0; j < n; j += V::W) s = V::add(s, V::load_n(xr + j, tail(n - j)));
      const float mean = V::hsum(s) / static_cast<float>(n);
      const T vmean = V::set1(mean);
      T q = V::zero();
      for (int64_t j = 0; j < n; j += V::W) {
        int k = tail(n - j);
        T d = V::sub(V::load_n(xr + j, k), vmean);
        if (k < V::W) {
          float buf[V::W];
          V::store(buf, d);
          for (int l = k; l < V::W; ++l) buf[l] = 0.f;
          d = V::load(buf);
        }
        q = V::fma(d, d, q);
      }
      const float rstd = 1.f / std::sqrt(V::hsum(q) / static_cast<float>(n) + eps);
      const T vr = V::set1(rstd);
      for (int64_t j = 0; j < n; j += V::W) {
        int k = tail(n - j);
        T v = V::mul(V::sub(V::load_n(xr + j, k), vmean), vr);
        if (gamma) v = V::mul(v, V::load_n(gamma + j, k));
        if (beta) v = V::add(v, V::load_n(beta + j, k));
        V::store_n(yr + j, v, k);
      }
    }
  }

  static void channel_affine(const float* x, const float* s, const float* t, float* y, int64_t rows,
                             int64_t c) {
    if (c < V::W && rows > 1) {
      // Few channels: treat the tensor as one flat run, with s/t tiled to a multiple of c.
      float st[2 * 64 * 16];
      const int64_t period = c * V::W;  // lcm-friendly: V::W rows of c channels
      float* ss = st;
      float* tt = st + 64 * 16;
      for (int64_t i = 0; i < period; ++i) {
        ss[i] = s ? s[i % c] : 1.f;
        tt[i] = t ? t[i % c] : 0.f;
      }
      const int64_t total = rows * c;
      int64_t i = 0;
      for (; i + period <= total; i += period)
        for (int64_t j = 0; j < period; j += V::W)
          V::store(y + i + j, V::fma(V::load(x + i + j), V::load(ss + j), V::load(tt + j)));
      for (int64_t j = 0; i + j < total; j += V::W) {
        int k = tail(total - i - j);
        V::store_n(y + i + j, V::fma(V::load_n(x + i + j, k), V::load_n(ss + j, k), V::load_n(tt + j, k)), k);
      }
      return;
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * c;
      float* yr = y + r * c;
      for (int64_t j = 0; j < c; j += V::W) {
        int k = tail(c - j);
        T sv = s ? V::load_n(s + j, k) : V::set1(1.f);
        T tv = t ? V::load_n(t + j, k) : V::zero();
        V::store_n(yr + j, V::fma(V::load_n(xr + j, k), sv, tv), k);
      }
    }
  }

  // Cache-blocked 2-D transpose; the 8x8 / 16x16 register tiles are left to
  // the compiler (it unrolls the fixed-size inner loops with this ISA's flags).
  static void transpose2d(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows,
                          int64_t cols) {
    constexpr int64_t B = 32;
    for (int64_t i0 = 0; i0 < rows; i0 += B) {
      const int64_t i1 = i0 + B < rows ? i0 + B : rows;
      for (int64_t j0 = 0; j0 < cols; j0 += B) {
        const int64_t j1 = j0 + B < cols ? j0 + B : cols;
        if (i1 - i0 == B && j1 - j0 == B) {
          for (int64_t j = j0; j < j1; ++j)
            for (int64_t i = 0; i < B; ++i) dst[j * ldd + i0 + i] = src[(i0 + i) * lds + j];
        } else {
          for (int64_t j = j0; j < j1; ++j)
            for (int64_t i = i0; i < i1; ++i) dst[j * ldd + i] = src[i * lds + j];
        }
      }
    }
  }

  static double sum(const float* x, int64_t n) {
    // Four streams a quarter of x apart, two vectors each per step: more lines in flight than one
    // stream gets from the hardware prefetchers (1 thread: 1 MB 10.6 vs 11.9 us, 64 MB 2.9 vs
    // 4.7 ms; software prefetch was slower from L2 and L3).
    const int64_t q = n / 4 / (2 * V::W) * (2 * V::W);
    const float *x0 = x, *x1 = x + q, *x2 = x + 2 * q, *x3 = x + 3 * q;
    T s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
    for (int64_t i = 0; i < q; i += 2 * V::W) {
      s0 = V::add(s0, V::add(V::load(x0 + i), V::load(x0 + i + V::W)));
      s1 = V::add(s1, V::add(V::load(x1 + i), V::load(x1 + i + V::W)));
      s2 = V::add(s2, V::add(V::load(x2 + i), V::load(x2 + i + V::W)));
      s3 = V::add(s3, V::add(V::load(x3 + i), V::load(x3 + i + V::W)));
    }
    for (int64_t i = 4 * q; i < n; i += V::W) s0 = V::add(s0, V::load_n(x + i, tail(n - i)));
    float lanes[4 * V::W];
    V::store(lanes, s0);
    V::store(lanes + V::W, s1);
    V::store(lanes + 2 * V::W, s2);
    V::store(lanes + 3 * V::W, s3);
    double total = 0.0;
    for (float v : lanes) total += v;
    return total;
  }

  static slimrt::kernels::EltwiseKernels table() {
    return {V::name(), &act, &prelu, &binary, &softmax, &layer_norm, &channel_affine, &transpose2d, &sum};
  }
};

}  // namespace

// Vectorised transcendental functions and activations, generic over a Vec type
// (vec_scalar.h / vec_avx2.h / vec_avx512.h). Included by each ISA's kernel
// file after its Vec header; everything is in an anonymous namespace.
//
// Accuracy: relative error against float64 wherever |f(x)| > 1e-30, measured on
// [-30, 30] plus special points; the tests (test_kernels_eltwise.py, test_kernels_gemm.py)
// assert <= 1e-6 relative for every function below (gelu_tanh: 1e-5 for |x| > 5):
//   exp     rel err <= ~2e-7 on [-87, 88]; underflows smoothly to 0 (subnormals
//           included) below, returns +inf above 88.72, NaN passes through.
//           Range reduction x = n ln2 + r, |r| <= ln2/2, Taylor degree 7 on r
//           (truncation 5e-9), 2^n applied as two factors so n = 128 and
//           subnormal results work.
//   expm1   rel err <= ~3e-7 everywhere (no cancellation near 0).
//   tanh    rel err <= ~2e-7: sign(x) * e / (e + 2), e = expm1(2|x|).
//   sigmoid rel err <= ~3e-7: e = exp(-|x|); x >= 0 ? 1/(1+e) : e/(1+e).
//   gelu    rel err <= ~5e-7 on both tails (erfc fitted as exp(-z^2) R(t) with z^2
//           carried exactly, see gelu() below), including the far negative tail.
//   gelu_tanh = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3) (same
//           function as 0.5 x (1 + tanh u), without the cancellation for x < 0);
//           rel err <= 2e-6 for |x| <= 5, <= 1e-5 beyond (u carries x^3's rounding).
// These are the only vector activations: the eltwise kernels, the GEMM epilogue
// (gemm/act_<isa>.cpp), depthwise and direct convolutions all use them.
#pragma once
#include <cstdint>

#include "kernels/act.h"

namespace {

template <class V>
struct VMath {
  using T = typename V::T;

  static T exp(T x) {
    const T lo = V::set1(-104.f), hi = V::set1(89.f);
    T xc = V::min(hi, V::max(lo, x));
    T n = V::round(V::mul(xc, V::set1(1.44269504088896341f)));
    T r = V::fnma(n, V::set1(0.693145751953125f), xc);        // ln2 hi (exact product)
    r = V::fnma(n, V::set1(1.42860682030941723212e-6f), r);    // ln2 lo
    T p = V::set1(1.f / 5040.f);
    p = V::fma(p, r, V::set1(1.f / 720.f));
    p = V::fma(p, r, V::set1(1.f / 120.f));
    p = V::fma(p, r, V::set1(1.f / 24.f));
    p = V::fma(p, r, V::set1(1.f / 6.f));
    p = V::fma(p, r, V::set1(0.5f));
    p = V::fma(p, r, V::set1(1.f));
    p = V::fma(p, r, V::set1(1.f));
    // 2^n = 2^h * 2^(n-h), h = round(n/2): both factors stay in [-75, 64].
    T h = V::round(V::mul(n, V::set1(0.5f)));
    return V::mul(V::mul(p, V::pow2i(h)), V::pow2i(V::sub(n, h)));
  }

  // exp(x) - 1 without cancellation; saturates to -1 below -87 and is only
  // used on x <= 88 (callers clamp).
  static T expm1(T x) {
    T xc = V::min(V::set1(88.f), V::max(V::set1(-87.f), x));
    T n = V::round(V::mul(xc, V::set1(1.44269504088896341f)));
    T r = V::fnma(n, V::set1(0.693145751953125f), xc);
    r = V::fnma(n, V::set1(1.42860682030941723212e-6f), r);
    // q = expm1(r) = r + r^2 (1/2 + r/6 + ... + r^6/8!)
    T p = V::set1(1.f / 40320.f);
    p = V::fma(p, r, V::set1(1.f / 5040.f));
    p = V::fma(p, r, V::set1(1.f / 720.f));
    p = V::fma(p, r, V::set1(1.f / 120.f));
    p = V::fma(p, r, V::set1(1.f / 24.f));
    p = V::fma(p, r, V::set1(1.f / 6.f));
    p = V::fma(p, r, V::set1(0.5f));
    T q = V::fma(V::mul(p, r), r, r);
    T s = V::pow2i(n);                       // n in [-126, 127]
    return V::fma(s, q, V::sub(s, V::set1(1.f)));  // 2^n q + (2^n - 1)
  }

  static T tanh(T x) {
    T a = V::min(V::set1(9.f), V::abs(x));   // tanh(9) rounds to 1 in float
    T e = expm1(V::add(a, a));
    T t = V::div(e, V::add(e, V::set1(2.f)));
    return V::xor_bits(t, V::sign_bits(x));
  }

  static T sigmoid(T x) {
    T e = exp(V::xor_bits(V::abs(x), V::set1(-0.f)));  // exp(-|x|)
    T s = V::div(V::set1(1.f), V::add(V::set1(1.f), e));
    return V::select(V::ge(x, V::zero()), s, V::mul(e, s));
  }

  // gelu(x) = 0.5 x (1 + erf(x/sqrt2)), relative-accurate on both tails, through erfc alone:
  //   erfc(z) = exp(-z^2) R(t), z = |x|/sqrt2 in [0, 10], t = 1/(1 + z/2) in [1/6, 1]
  //             (R degree 9, fitted for relative error over the whole range: 3e-8 in float64, 2.6e-7
  //             evaluated in float32), with z^2 = x^2/2 carried exactly (x*x plus its rounding error)
  //             so exp(-z^2) keeps its relative accuracy for large |x|, and t from a reciprocal
  //             estimate plus one Newton step (V::rcp) rather than a division;
  //   gelu = 0.5 x erfc(z) for x < 0 (relative-accurate down to the far tail), 0.5 x (2 - erfc(z)) for
  //   x >= 0. One branch for every lane (the former erf polynomial near 0 cost a second one).
  // erfc is flushed to 0 beyond |x| = 14.14 (erfc(10) < 2e-45).
  static T gelu(T x) {
    const T ax = V::abs(x);
    const T z = V::min(V::mul(ax, V::set1(0.70710678118654752f)), V::set1(10.f));
    const T t = V::rcp(V::fma(z, V::set1(0.5f), V::set1(1.f)));
    T q = V::set1(-0.055052749812603f);
    q = V::fma(q, t, V::set1(0.26391053199768066f));
    q = V::fma(q, t, V::set1(-0.4414939284324646f));
    q = V::fma(q, t, V::set1(0.2212110012769699f));
    q = V::fma(q, t, V::set1(0.017062481492757797f));
    q = V::fma(q, t, V::set1(0.1812572181224823f));
    q = V::fma(q, t, V::set1(0.2497912496328354f));
    q = V::fma(q, t, V::set1(0.2810988426208496f));
    q = V::fma(q, t, V::set1(0.28222134709358215f));
    q = V::fma(q, t, V::set1(-6.0094052969361655e-06f));
    const T lim = V::set1(14.142135f);
    const T xc = V::min(ax, lim);
    const T xx = V::mul(xc, xc);
    const T xx_err = V::mul_err(xc, xc, xx);  // xc*xc - xx, exact
    T ez = exp(V::mul(V::set1(-0.5f), xx));
    ez = V::fnma(ez, V::mul(V::set1(0.5f), xx_err), ez);  // * exp(-err/2) ~ (1 - err/2)
    const T erfc = V::select(V::gt(ax, lim), V::zero(), V::mul(ez, q));
    const T f = V::select(V::lt(x, V::zero()), erfc, V::sub(V::set1(2.f), erfc));
    return V::mul(V::mul(V::set1(0.5f), x), f);
  }

  static T gelu_tanh(T x) {
    // 2u = 2 sqrt(2/pi) (x + 0.044715 x^3)
    T x2 = V::mul(x, x);
    T u2 = V::mul(V::mul(x, V::set1(1.5957691216057308f)), V::fma(x2, V::set1(0.044715f), V::set1(1.f)));
    return V::mul(x, sigmoid(u2));
  }

  static T relu6_shift(T x) {  // relu6(x + 3) / 6
    T v = V::min(V::set1(6.f), V::max(V::zero(), V::add(x, V::set1(3.f))));
    return V::mul(v, V::set1(1.f / 6.f));
  }
};

// Applies `act` to one vector. Kernels call act_apply inside loops whose
// activation is fixed (see for_each_act), so the switch is hoisted.
template <class V, slimrt::Act A>
inline typename V::T act_apply(typename V::T x, typename V::T alpha) {
  using M = VMath<V>;
  using slimrt::Act;
  if constexpr (A == Act::None) return x;
  if constexpr (A == Act::Relu) return V::max(V::zero(), x);
  if constexpr (A == Act::Relu6) return V::min(V::set1(6.f), V::max(V::zero(), x));
  if constexpr (A == Act::LeakyRelu) return V::select(V::ge(x, V::zero()), x, V::mul(x, alpha));
  if constexpr (A == Act::Sigmoid) return M::sigmoid(x);
  if constexpr (A == Act::Tanh) return M::tanh(x);
  if constexpr (A == Act::Gelu) return M::gelu(x);
  if constexpr (A == Act::GeluTanh) return M::gelu_tanh(x);
  if constexpr (A == Act::Silu) return V::mul(x, M::sigmoid(x));
  if constexpr (A == Act::HardSwish) return V::mul(x, M::relu6_shift(x));
  if constexpr (A == Act::Elu) return V::select(V::ge(x, V::zero()), x, V::mul(alpha, M::expm1(x)));
  if constexpr (A == Act::HardSigmoid) return M::relu6_shift(x);
  return x;
}

// y[i] = act(x[i]) for i < n (x == y allowed).
template <class V, slimrt::Act A>
void act_loop(const float* x, float* y, int64_t n, float alpha) {
  using T = typename V::T;
  const T va = V::set1(alpha);
  int64_t i = 0;
  for (; i + 2 * V::W <= n; i += 2 * V::W) {
    T a = V::load(x + i), b = V::load(x + i + V::W);
    V::store(y + i, act_apply<V, A>(a, va));
    V::store(y + i + V::W, act_apply<V, A>(b, va));
  }
  for (; i < n; i += V::W) {
    int k = static_cast<int>(n - i < V::W ? n - i : V::W);
    V::store_n(y + i, act_apply<V, A>(V::load_n(x + i, k), va), k);
  }
}

template <class V>
void act_any(const float* x, float* y, int64_t n, slimrt::Act act, float alpha) {
  using slimrt::Act;
  switch (act) {
    case Act::None: if (x != y) for (int64_t i = 0; i < n; ++i) y[i] = x[i]; return;
    case Act::Relu: return act_loop<V, Act::Relu>(x, y, n, alpha);
    case Act::Relu6: return act_loop<V, Act::Relu6>(x, y, n, alpha);
    case Act::LeakyRelu: return act_loop<V, Act::LeakyRelu>(x, y, n, alpha);
    case Act::Sigmoid: return act_loop<V, Act::Sigmoid>(x, y, n, alpha);
    case Act::Tanh: return act_loop<V, Act::Tanh>(x, y, n, alpha);
    case Act::Gelu: return act_loop<V, Act::Gelu>(x, y, n, alpha);
    case Act::GeluTanh: return act_loop<V, Act::GeluTanh>(x, y, n, alpha);
    case Act::Silu: return act_loop<V, Act::Silu>(x, y, n, alpha);
    case Act::HardSwish: return act_loop<V, Act::HardSwish>(x, y, n, alpha);
    case Act::Elu: return act_loop<V, Act::Elu>(x, y, n, alpha);
    case Act::HardSigmoid: return act_loop<V, Act::HardSigmoid>(x, y, n, alpha);
  }
}

}  // namespace

// Scalar "vector" of one lane, with the same interface as VecAvx2/VecAvx512.
// The generic kernels (eltwise_impl.h, pool_impl.h, dwconv_impl.h) are written
// once against this interface and instantiated in each ISA's .cpp file; the
// scalar instantiation is the reference path. Everything lives in an anonymous
// namespace so each ISA file keeps its own copy (no ODR mixing across ISAs).
//
// Conventions shared by all Vec types:
//   max(a, b) / min(a, b) return b when either is NaN (Intel maxps semantics),
//   so clamp as min(hi, max(lo, x)) to let NaN in x pass through.
//   load_n / store_n touch only the first n lanes (0 <= n <= W).
#pragma once
#include <cstdint>
#include <cstring>

namespace {

struct VecScalar {
  using T = float;
  using M = bool;
  static constexpr int W = 1;
  static const char* name() { return "scalar"; }
  static T load(const float* p) { return *p; }
  static void store(float* p, T v) { *p = v; }
  static T load_n(const float* p, int n) { return n > 0 ? *p : 0.f; }
  static void store_n(float* p, T v, int n) { if (n > 0) *p = v; }
  static T set1(float v) { return v; }
  static T zero() { return 0.f; }
  static T add(T a, T b) { return a + b; }
  static T sub(T a, T b) { return a - b; }
  static T mul(T a, T b) { return a * b; }
  static T div(T a, T b) { return a / b; }
  static T rcp(T x) { return 1.f / x; }
  static T fma(T a, T b, T c) { return a * b + c; }      // a*b + c (not fused on the scalar path)
  static T fnma(T a, T b, T c) { return c - a * b; }     // c - a*b
  // a*b - p, exact for p = fl(a*b) (the product of two floats is exact in double).
  static T mul_err(T a, T b, T p) { return static_cast<float>(static_cast<double>(a) * b - p); }
  static T max(T a, T b) { return a > b ? a : b; }
  static T min(T a, T b) { return a < b ? a : b; }
  static T abs(T a) { uint32_t u; std::memcpy(&u, &a, 4); u &= 0x7fffffffu; std::memcpy(&a, &u, 4); return a; }
  static T sign_bits(T a) { uint32_t u; std::memcpy(&u, &a, 4); u &= 0x80000000u; std::memcpy(&a, &u, 4); return a; }
  static T xor_bits(T a, T b) {
    uint32_t u, w; std::memcpy(&u, &a, 4); std::memcpy(&w, &b, 4); u ^= w; std::memcpy(&a, &u, 4); return a;
  }
  static M lt(T a, T b) { return a < b; }
  static M ge(T a, T b) { return a >= b; }
  static M gt(T a, T b) { return a > b; }
  static T select(M m, T a, T b) { return m ? a : b; }   // m ? a : b
  // Round to nearest even, valid for |x| < 2^22 (all callers clamp first).
  static T round(T x) {
    const float magic = 12582912.f;  // 1.5 * 2^23
    float t = x + magic;  // no -ffast-math anywhere, so the adds are kept
    return t - magic;
  }
  // 2^n for integer-valued n in [-127, 127] (n = -127 gives 0).
  static T pow2i(T n) {
    int32_t e = (static_cast<int32_t>(n) + 127) << 23;
    float r; std::memcpy(&r, &e, 4); return r;
  }
  static float hsum(T v) { return v; }
  static float hmax(T v) { return v; }
};

}  // namespace

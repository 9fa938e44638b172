// 16-lane AVX-512F vector with the interface of VecScalar (see vec_scalar.h).
// Tails use AVX-512 lane masks. Include only from *_avx512.cpp files.
#pragma once
#include <immintrin.h>
#include <cstdint>

// gcc 12 reports its own _mm512_undefined_ps() (`__m512 __Y = __Y;`) inside
// masked/rounding intrinsics as maybe-uninitialized: a known false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace {

struct VecAvx512 {
  using T = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static const char* name() { return "avx512"; }
  static __mmask16 lane_mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(lane_mask(n), p); }
  static void store_n(float* p, T v, int n) { _mm512_mask_storeu_ps(p, lane_mask(n), v); }
  static T set1(float v) { return _mm512_set1_ps(v); }
  static T zero() { return _mm512_setzero_ps(); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T div(T a, T b) { return _mm512_div_ps(a, b); }
  // 1/x to ~1 ulp: rcp14 plus one Newton step (a fraction of div's cost)
  static T rcp(T x) {
    const T r = _mm512_rcp14_ps(x);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(x, r, _mm512_set1_ps(1.f)), r);
  }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T fnma(T a, T b, T c) { return _mm512_fnmadd_ps(a, b, c); }
  static T mul_err(T a, T b, T p) { return _mm512_fmsub_ps(a, b, p); }  // a*b - p, exact for p = fl(a*b)
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  static T min(T a, T b) { return _mm512_min_ps(a, b); }
  static T abs(T a) { return _mm512_abs_ps(a); }
  static T sign_bits(T a) { return _mm512_and_ps(_mm512_set1_ps(-0.f), a); }
  static T xor_bits(T a, T b) { return _mm512_xor_ps(a, b); }
  static M lt(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M ge(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static M gt(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static T select(M m, T a, T b) { return _mm512_mask_blend_ps(m, b, a); }
  static T round(T x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static T pow2i(T n) {
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  static float hsum(T v) { return _mm512_reduce_add_ps(v); }
  static float hmax(T v) { return _mm512_reduce_max_ps(v); }
};

}  // namespace

// Activations on AVX-512 registers (16 floats), used by the AVX-512 GEMM epilogue
// and apply_act_inplace(isa=avx512). Tail elements use masked loads/stores.
// Relative accuracy vs float64 where |y| > 1e-30 (tests/test_kernels_gemm.py):
//   exp ~1e-7 on [-87, 88.7]; sigmoid/silu/tanh/elu/gelu <= 1e-6 (measured <= 3.3e-7);
//   gelu_tanh <= 2e-6 for |x| <= 5, <= 1e-5 beyond (rounding of x^3 in its exponent).
// gelu uses erf(z) = z P(z^2) for z = |x|/sqrt2 < 0.5 and erfc(z) = exp(-z^2) R(1/(1+z/2))
// above, so the negative tail 0.5 x erfc(|z|) keeps its relative accuracy.
// Polynomial coefficients were fitted here (weighted least squares, float64).
#include <immintrin.h>

// GCC 12 reports _mm512_undefined_ps() inside _mm512_max_ps/min_ps as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels::detail::avx512 {
namespace {

inline __m512 c(float v) { return _mm512_set1_ps(v); }

// exp(x): x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n applied in two
// halves so that results down to the denormals (x >= -104) and up to FLT_MAX work.
inline __m512 v_exp(__m512 x) {
  x = _mm512_max_ps(c(-104.f), x);  // NaN in x passes through (second operand)
  x = _mm512_min_ps(c(88.8f), x);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, c(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, c(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, c(1.42860676533018708e-06f), r);
  __m512 p = c(0.0013882305938750505f);
  p = _mm512_fmadd_ps(p, r, c(0.008374631404876709f));
  p = _mm512_fmadd_ps(p, r, c(0.04166726395487785f));
  p = _mm512_fmadd_ps(p, r, c(0.1666642129421234f));
  p = _mm512_fmadd_ps(p, r, c(0.4999999701976776f));
  p = _mm512_fmadd_ps(p, r, c(1.0f));
  p = _mm512_fmadd_ps(p, r, c(1.0f));
  __m512i ni = _mm512_cvtps_epi32(n);
  __m512i h = _mm512_srai_epi32(ni, 1);
  __m512i l = _mm512_sub_epi32(ni, h);
  __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h, _mm512_set1_epi32(127)), 23));
  __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(l, _mm512_set1_epi32(127)), 23));
  return _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
}

inline __m512 v_abs(__m512 x) { return _mm512_abs_ps(x); }
inline __mmask16 v_neg(__m512 x) { return _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ); }

// 1/(1+exp(-x)) computed from e = exp(-|x|) so that neither branch cancels.
inline __m512 v_sigmoid(__m512 x) {
  __m512 e = v_exp(_mm512_sub_ps(_mm512_setzero_ps(), v_abs(x)));
  __m512 s = _mm512_div_ps(c(1.f), _mm512_add_ps(c(1.f), e));
  return _mm512_mask_mul_ps(s, v_neg(x), s, e);
}

// tanh: odd polynomial for |x| < 0.6, (1-e)/(1+e) with e = exp(-2|x|) above.
inline __m512 v_tanh(__m512 x) {
  __m512 ax = v_abs(x);
  __m512 x2 = _mm512_mul_ps(x, x);
  __m512 p = c(-0.005865820217877626f);
  p = _mm512_fmadd_ps(p, x2, c(0.02076411433517933f));
  p = _mm512_fmadd_ps(p, x2, c(-0.053771328181028366f));
  p = _mm512_fmadd_ps(p, x2, c(0.13331709802150726f));
  p = _mm512_fmadd_ps(p, x2, c(-0.3333328366279602f));
  p = _mm512_fmadd_ps(p, x2, c(1.0f));
  __m512 small = _mm512_mul_ps(p, x);
  __m512 e = v_exp(_mm512_mul_ps(c(-2.f), ax));
  __m512 big = _mm512_div_ps(_mm512_sub_ps(c(1.f), e), _mm512_add_ps(c(1.f), e));
  big = _mm512_mask_sub_ps(big, v_neg(x), _mm512_setzero_ps(), big);
  __mmask16 is_small = _mm512_cmp_ps_mask(ax, c(0.6f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(is_small, big, small);
}

// gelu(x) = 0.5 x (1 + erf(z)), z = |x|/sqrt2. For z < 0.5 erf(z) = z P(z^2);
// above, erfc(z) = exp(-z^2) R(t), t = 1/(1 + z/2), with z^2 = x^2/2 formed exactly
// (x*x plus its FMA rounding error), and gelu = 0.5 x (2 - erfc) or 0.5 x erfc.
inline __m512 v_gelu(__m512 x) {
  __m512 ax = v_abs(x);
  __m512 z = _mm512_min_ps(_mm512_mul_ps(ax, c(0.70710678118654752f)), c(10.f));
  __m512 z2 = _mm512_mul_ps(z, z);
  __m512 p = c(-0.0007690812926739454f);
  p = _mm512_fmadd_ps(p, z2, c(0.005200009793043137f));
  p = _mm512_fmadd_ps(p, z2, c(-0.02686300314962864f));
  p = _mm512_fmadd_ps(p, z2, c(0.11283771693706512f));
  p = _mm512_fmadd_ps(p, z2, c(-0.37612637877464294f));
  p = _mm512_fmadd_ps(p, z2, c(1.128379225730896f));
  __m512 erf_small = _mm512_mul_ps(p, z);  // erf(|x|/sqrt2) for z < 0.5
  __m512 t = _mm512_div_ps(c(1.f), _mm512_fmadd_ps(z, c(0.5f), c(1.f)));
  __m512 q = c(0.04146390035748482f);
  q = _mm512_fmadd_ps(q, t, c(-0.05427858978509903f));
  q = _mm512_fmadd_ps(q, t, c(-0.1592646986246109f));
  q = _mm512_fmadd_ps(q, t, c(0.24929767847061157f));
  q = _mm512_fmadd_ps(q, t, c(0.09003674238920212f));
  q = _mm512_fmadd_ps(q, t, c(0.272835373878479f));
  q = _mm512_fmadd_ps(q, t, c(0.27748897671699524f));
  q = _mm512_fmadd_ps(q, t, c(0.28253963589668274f));
  q = _mm512_fmadd_ps(q, t, c(-1.8054699467029423e-05f));
  __m512 xc = _mm512_min_ps(ax, c(14.142135f));
  __m512 xx = _mm512_mul_ps(xc, xc);
  __m512 xx_err = _mm512_fmsub_ps(xc, xc, xx);  // xc*xc - xx, exact
  __m512 ez = v_exp(_mm512_mul_ps(c(-0.5f), xx));
  ez = _mm512_fnmadd_ps(ez, _mm512_mul_ps(c(0.5f), xx_err), ez);  // * exp(-err/2) ~ (1 - err/2)
  __m512 erfc_big = _mm512_mul_ps(ez, q);
  // erfc(z) < 2e-45 for z > 10: exactly 0 there (also keeps 0.5 x erfc finite-free for huge |x|)
  erfc_big = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(ax, c(14.142135f), _CMP_LE_OQ), erfc_big);
  __m512 half_x = _mm512_mul_ps(c(0.5f), x);
  __mmask16 neg = v_neg(x);
  // small: 0.5 x (1 +- erf)
  __m512 one_pm = _mm512_mask_sub_ps(_mm512_add_ps(c(1.f), erf_small), neg, c(1.f), erf_small);
  // big: x >= 0 -> 0.5 x (2 - erfc), x < 0 -> 0.5 x erfc
  __m512 two_m = _mm512_mask_blend_ps(neg, _mm512_sub_ps(c(2.f), erfc_big), erfc_big);
  __mmask16 is_small = _mm512_cmp_ps_mask(z, c(0.5f), _CMP_LT_OQ);
  return _mm512_mul_ps(half_x, _mm512_mask_blend_ps(is_small, two_m, one_pm));
}

// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3).
inline __m512 v_gelu_tanh(__m512 x) {
  __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  __m512 u = _mm512_mul_ps(c(0.79788456080286536f), _mm512_fmadd_ps(c(0.044715f), x3, x));
  __m512 e = v_exp(_mm512_mul_ps(c(-2.f), u));
  return _mm512_div_ps(x, _mm512_add_ps(c(1.f), e));
}

// x >= 0 ? x : alpha * expm1(x); expm1 by polynomial on (-0.5, 0), exp - 1 below.
inline __m512 v_elu(__m512 x, __m512 alpha) {
  __m512 p = c(0.00015940469165798277f);
  p = _mm512_fmadd_ps(p, x, c(0.0013627831358462572f));
  p = _mm512_fmadd_ps(p, x, c(0.008324452675879002f));
  p = _mm512_fmadd_ps(p, x, c(0.04166509211063385f));
  p = _mm512_fmadd_ps(p, x, c(0.16666653752326965f));
  p = _mm512_fmadd_ps(p, x, c(0.5f));
  p = _mm512_fmadd_ps(p, x, c(1.0f));
  __m512 small = _mm512_mul_ps(p, x);
  __m512 big = _mm512_sub_ps(v_exp(x), c(1.f));
  __mmask16 is_small = _mm512_cmp_ps_mask(x, c(-0.5f), _CMP_GT_OQ);
  __m512 em1 = _mm512_mask_blend_ps(is_small, big, small);
  return _mm512_mask_mul_ps(x, v_neg(x), alpha, em1);
}

inline __m512 v_hard_sigmoid(__m512 x) {
  __m512 y = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(x, c(3.f)), _mm512_setzero_ps()), c(6.f));
  return _mm512_mul_ps(y, c(1.f / 6.f));
}

template <typename F>
void map(float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

void f32_act_inplace(float* x, int64_t n, Act act, float alpha) {
  const __m512 va = _mm512_set1_ps(alpha);
  const __m512 zero = _mm512_setzero_ps();
  switch (act) {
    case Act::None: return;
    case Act::Relu: map(x, n, [&](__m512 v) { return _mm512_max_ps(v, zero); }); return;
    case Act::Relu6: map(x, n, [&](__m512 v) { return _mm512_min_ps(_mm512_max_ps(v, zero), c(6.f)); }); return;
    case Act::LeakyRelu:
      map(x, n, [&](__m512 v) { return _mm512_mask_mul_ps(v, v_neg(v), v, va); });
      return;
    case Act::Sigmoid: map(x, n, [](__m512 v) { return v_sigmoid(v); }); return;
    case Act::Tanh: map(x, n, [](__m512 v) { return v_tanh(v); }); return;
    case Act::Gelu: map(x, n, [](__m512 v) { return v_gelu(v); }); return;
    case Act::GeluTanh: map(x, n, [](__m512 v) { return v_gelu_tanh(v); }); return;
    case Act::Silu: map(x, n, [](__m512 v) { return _mm512_mul_ps(v, v_sigmoid(v)); }); return;
    case Act::HardSwish: map(x, n, [](__m512 v) { return _mm512_mul_ps(v, v_hard_sigmoid(v)); }); return;
    case Act::Elu: map(x, n, [&](__m512 v) { return v_elu(v, va); }); return;
    case Act::HardSigmoid: map(x, n, [](__m512 v) { return v_hard_sigmoid(v); }); return;
  }
}

}  // namespace slimrt::kernels::detail::avx512

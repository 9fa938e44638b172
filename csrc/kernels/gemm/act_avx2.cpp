// Activations on AVX2+FMA registers (8 floats): the same approximations as
// act_avx512.cpp (see there for the method and the accuracy), written with
// compare masks and blends. Tails go through _mm256_maskload/maskstore.
#include <immintrin.h>

#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels::detail::avx2 {
namespace {

inline __m256 c(float v) { return _mm256_set1_ps(v); }
inline __m256 zero() { return _mm256_setzero_ps(); }

inline __m256 v_exp(__m256 x) {
  x = _mm256_max_ps(c(-104.f), x);  // NaN in x passes through (second operand)
  x = _mm256_min_ps(c(88.8f), x);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, c(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, c(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, c(1.42860676533018708e-06f), r);
  __m256 p = c(0.0013882305938750505f);
  p = _mm256_fmadd_ps(p, r, c(0.008374631404876709f));
  p = _mm256_fmadd_ps(p, r, c(0.04166726395487785f));
  p = _mm256_fmadd_ps(p, r, c(0.1666642129421234f));
  p = _mm256_fmadd_ps(p, r, c(0.4999999701976776f));
  p = _mm256_fmadd_ps(p, r, c(1.0f));
  p = _mm256_fmadd_ps(p, r, c(1.0f));
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i h = _mm256_srai_epi32(ni, 1);
  __m256i l = _mm256_sub_epi32(ni, h);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(l, _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

inline __m256 v_abs(__m256 x) { return _mm256_andnot_ps(c(-0.f), x); }
inline __m256 v_neg(__m256 x) { return _mm256_cmp_ps(x, zero(), _CMP_LT_OQ); }
// where mask: b, else a
inline __m256 sel(__m256 a, __m256 b, __m256 mask) { return _mm256_blendv_ps(a, b, mask); }

inline __m256 v_sigmoid(__m256 x) {
  __m256 e = v_exp(_mm256_sub_ps(zero(), v_abs(x)));
  __m256 s = _mm256_div_ps(c(1.f), _mm256_add_ps(c(1.f), e));
  return sel(s, _mm256_mul_ps(s, e), v_neg(x));
}

inline __m256 v_tanh(__m256 x) {
  __m256 ax = v_abs(x);
  __m256 x2 = _mm256_mul_ps(x, x);
  __m256 p = c(-0.005865820217877626f);
  p = _mm256_fmadd_ps(p, x2, c(0.02076411433517933f));
  p = _mm256_fmadd_ps(p, x2, c(-0.053771328181028366f));
  p = _mm256_fmadd_ps(p, x2, c(0.13331709802150726f));
  p = _mm256_fmadd_ps(p, x2, c(-0.3333328366279602f));
  p = _mm256_fmadd_ps(p, x2, c(1.0f));
  __m256 small = _mm256_mul_ps(p, x);
  __m256 e = v_exp(_mm256_mul_ps(c(-2.f), ax));
  __m256 big = _mm256_div_ps(_mm256_sub_ps(c(1.f), e), _mm256_add_ps(c(1.f), e));
  big = _mm256_or_ps(big, _mm256_and_ps(x, c(-0.f)));  // copy the sign of x
  return sel(big, small, _mm256_cmp_ps(ax, c(0.6f), _CMP_LT_OQ));
}

inline __m256 v_gelu(__m256 x) {
  __m256 ax = v_abs(x);
  __m256 z = _mm256_min_ps(_mm256_mul_ps(ax, c(0.70710678118654752f)), c(10.f));
  __m256 z2 = _mm256_mul_ps(z, z);
  __m256 p = c(-0.0007690812926739454f);
  p = _mm256_fmadd_ps(p, z2, c(0.005200009793043137f));
  p = _mm256_fmadd_ps(p, z2, c(-0.02686300314962864f));
  p = _mm256_fmadd_ps(p, z2, c(0.11283771693706512f));
  p = _mm256_fmadd_ps(p, z2, c(-0.37612637877464294f));
  p = _mm256_fmadd_ps(p, z2, c(1.128379225730896f));
  __m256 erf_small = _mm256_mul_ps(p, z);
  __m256 t = _mm256_div_ps(c(1.f), _mm256_fmadd_ps(z, c(0.5f), c(1.f)));
  __m256 q = c(0.04146390035748482f);
  q = _mm256_fmadd_ps(q, t, c(-0.05427858978509903f));
  q = _mm256_fmadd_ps(q, t, c(-0.1592646986246109f));
  q = _mm256_fmadd_ps(q, t, c(0.24929767847061157f));
  q = _mm256_fmadd_ps(q, t, c(0.09003674238920212f));
  q = _mm256_fmadd_ps(q, t, c(0.272835373878479f));
  q = _mm256_fmadd_ps(q, t, c(0.27748897671699524f));
  q = _mm256_fmadd_ps(q, t, c(0.28253963589668274f));
  q = _mm256_fmadd_ps(q, t, c(-1.8054699467029423e-05f));
  __m256 xc = _mm256_min_ps(ax, c(14.142135f));
  __m256 xx = _mm256_mul_ps(xc, xc);
  __m256 xx_err = _mm256_fmsub_ps(xc, xc, xx);
  __m256 ez = v_exp(_mm256_mul_ps(c(-0.5f), xx));
  ez = _mm256_fnmadd_ps(ez, _mm256_mul_ps(c(0.5f), xx_err), ez);
  __m256 erfc_big = _mm256_mul_ps(ez, q);
  // erfc(z) < 2e-45 for z > 10: exactly 0 there
  erfc_big = _mm256_and_ps(_mm256_cmp_ps(ax, c(14.142135f), _CMP_LE_OQ), erfc_big);
  __m256 neg = v_neg(x);
  __m256 one_pm = sel(_mm256_add_ps(c(1.f), erf_small), _mm256_sub_ps(c(1.f), erf_small), neg);
  __m256 two_m = sel(_mm256_sub_ps(c(2.f), erfc_big), erfc_big, neg);
  __m256 f = sel(two_m, one_pm, _mm256_cmp_ps(z, c(0.5f), _CMP_LT_OQ));
  return _mm256_mul_ps(_mm256_mul_ps(c(0.5f), x), f);
}

inline __m256 v_gelu_tanh(__m256 x) {
  __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  __m256 u = _mm256_mul_ps(c(0.79788456080286536f), _mm256_fmadd_ps(c(0.044715f), x3, x));
  __m256 e = v_exp(_mm256_mul_ps(c(-2.f), u));
  return _mm256_div_ps(x, _mm256_add_ps(c(1.f), e));
}

inline __m256 v_elu(__m256 x, __m256 alpha) {
  __m256 p = c(0.00015940469165798277f);
  p = _mm256_fmadd_ps(p, x, c(0.0013627831358462572f));
  p = _mm256_fmadd_ps(p, x, c(0.008324452675879002f));
  p = _mm256_fmadd_ps(p, x, c(0.04166509211063385f));
  p = _mm256_fmadd_ps(p, x, c(0.16666653752326965f));
  p = _mm256_fmadd_ps(p, x, c(0.5f));
  p = _mm256_fmadd_ps(p, x, c(1.0f));
  __m256 small = _mm256_mul_ps(p, x);
  __m256 big = _mm256_sub_ps(v_exp(x), c(1.f));
  __m256 em1 = sel(big, small, _mm256_cmp_ps(x, c(-0.5f), _CMP_GT_OQ));
  return sel(x, _mm256_mul_ps(alpha, em1), v_neg(x));
}

inline __m256 v_hard_sigmoid(__m256 x) {
  __m256 y = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(x, c(3.f)), zero()), c(6.f));
  return _mm256_mul_ps(y, c(1.f / 6.f));
}

template <typename F>
void map(float* x, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)),
                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(x + i, m, f(_mm256_maskload_ps(x + i, m)));
  }
}

}  // namespace

void f32_act_inplace(float* x, int64_t n, Act act, float alpha) {
  const __m256 va = _mm256_set1_ps(alpha);
  switch (act) {
    case Act::None: return;
    case Act::Relu: map(x, n, [](__m256 v) { return _mm256_max_ps(v, zero()); }); return;
    case Act::Relu6: map(x, n, [](__m256 v) { return _mm256_min_ps(_mm256_max_ps(v, zero()), c(6.f)); }); return;
    case Act::LeakyRelu:
      map(x, n, [&](__m256 v) { return sel(v, _mm256_mul_ps(v, va), v_neg(v)); });
      return;
    case Act::Sigmoid: map(x, n, [](__m256 v) { return v_sigmoid(v); }); return;
    case Act::Tanh: map(x, n, [](__m256 v) { return v_tanh(v); }); return;
    case Act::Gelu: map(x, n, [](__m256 v) { return v_gelu(v); }); return;
    case Act::GeluTanh: map(x, n, [](__m256 v) { return v_gelu_tanh(v); }); return;
    case Act::Silu: map(x, n, [](__m256 v) { return _mm256_mul_ps(v, v_sigmoid(v)); }); return;
    case Act::HardSwish: map(x, n, [](__m256 v) { return _mm256_mul_ps(v, v_hard_sigmoid(v)); }); return;
    case Act::Elu: map(x, n, [&](__m256 v) { return v_elu(v, va); }); return;
    case Act::HardSigmoid: map(x, n, [](__m256 v) { return v_hard_sigmoid(v); }); return;
  }
}

}  // namespace slimrt::kernels::detail::avx2

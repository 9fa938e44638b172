// AVX2 int8 depthwise convolution rows: 8 channels per ymm (vpmovzxbd of 8 input bytes,
// vpmaddwd with the int32-widened weights, vpaddd); channels past the last multiple of 8 run
// the scalar loop. Epilogue as the scalar reference, explicit FMAs where it has std::fma.
#include <immintrin.h>

#include "kernels/qdwconv/qdwconv_internal.h"

namespace slimrt::kernels::detail::avx2 {
namespace {

inline __m256i load_u8x8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

inline void finish(const Q8DwArgs& a, __m256i acc, __m256i zsum, __m256 mul, __m256 bias, int64_t p, int64_t c) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc, zsum)), mul, bias);
  if (a.residual) y = _mm256_add_ps(y, _mm256_loadu_ps(a.residual + p * a.ldr + c));
  if (a.residual_u8) {
    const __m256 rq = _mm256_cvtepi32_ps(load_u8x8(a.residual_u8 + p * a.ldr + c));
    y = _mm256_fmadd_ps(_mm256_sub_ps(rq, _mm256_set1_ps(a.res_zero)), _mm256_set1_ps(a.res_scale), y);
  }
  switch (a.act) {
    case Act::Relu: y = _mm256_max_ps(zero, y); break;
    case Act::Relu6: y = _mm256_min_ps(_mm256_set1_ps(6.f), _mm256_max_ps(zero, y)); break;
    case Act::LeakyRelu:
      y = _mm256_blendv_ps(y, _mm256_mul_ps(y, _mm256_set1_ps(a.alpha)), _mm256_cmp_ps(y, zero, _CMP_LT_OQ));
      break;
    default: break;
  }
  const int64_t C = a.s->c;
  if (a.out_u8) {
    __m256 t = _mm256_round_ps(_mm256_mul_ps(y, _mm256_set1_ps(a.inv_out_scale)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm256_add_ps(t, _mm256_set1_ps(a.out_zero));
    t = _mm256_min_ps(_mm256_max_ps(t, zero), _mm256_set1_ps(255.f));  // NaN -> 0
    const __m256i v = _mm256_cvtps_epi32(t);
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(static_cast<uint8_t*>(a.y) + p * C + c), _mm_packus_epi16(w, w));
  } else {
    _mm256_storeu_ps(static_cast<float*>(a.y) + p * C + c, y);
  }
}

template <int KH, int KW>
void rows_impl(const Q8DwArgs& a, int64_t r0, int64_t r1) {
  const DwConv2dShape& s = *a.s;
  const int kh_n = KH ? KH : s.kh, kw_n = KW ? KW : s.kw;
  const int64_t C = s.c, C8 = C / 8 * 8;
  const __m256i zx = _mm256_set1_epi32(a.x_zero);
  int64_t ow_lo = 0, ow_hi = 0;
  {
    int64_t lo = (s.pl + s.sw - 1) / s.sw;
    int64_t hi = s.ow;
    while (hi > lo && (hi - 1) * s.sw - s.pl + (kw_n - 1) * s.dw >= s.w) --hi;
    ow_lo = lo < s.ow ? lo : s.ow;
    ow_hi = hi > ow_lo ? hi : ow_lo;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / s.oh, oh = r % s.oh;
    const uint8_t* xrow[KH ? KH : 64];
    for (int kh = 0; kh < kh_n; ++kh) {
      const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
      xrow[kh] = (ih >= 0 && ih < s.h) ? a.x + (n * s.h + ih) * s.w * C : nullptr;
    }
    for (int64_t c = 0; c < C8; c += 8) {
      __m256i wv[KH && KW ? KH * KW : 1];
      if (KH && KW)
        for (int t = 0; t < KH * KW; ++t)
          wv[t] = _mm256_load_si256(reinterpret_cast<const __m256i*>(a.w + t * a.ldw + c));
      auto wtap = [&](int t) {
        return (KH && KW) ? wv[t] : _mm256_load_si256(reinterpret_cast<const __m256i*>(a.w + t * a.ldw + c));
      };
      const __m256i zsum = _mm256_mullo_epi32(zx, _mm256_load_si256(reinterpret_cast<const __m256i*>(a.wsum + c)));
      const __m256 mul = _mm256_loadu_ps(a.mul + c);
      const __m256 bias = a.bias ? _mm256_loadu_ps(a.bias + c) : _mm256_setzero_ps();
      auto pixel = [&](int64_t ow, bool checked) {
        __m256i acc = _mm256_setzero_si256();
        const int64_t iw0 = ow * s.sw - s.pl;
        for (int kh = 0; kh < kh_n; ++kh) {
          const uint8_t* row = xrow[kh];
          for (int kw = 0; kw < kw_n; ++kw) {
            const int64_t iw = iw0 + kw * s.dw;
            __m256i xv;
            if (row && (!checked || (iw >= 0 && iw < s.w))) xv = load_u8x8(row + iw * C + c);
            else xv = zx;
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wtap(kh * kw_n + kw)));
          }
        }
        finish(a, acc, zsum, mul, bias, r * s.ow + ow, c);
      };
      for (int64_t ow = 0; ow < ow_lo; ++ow) pixel(ow, true);
      for (int64_t ow = ow_lo; ow < ow_hi; ++ow) pixel(ow, false);
      for (int64_t ow = ow_hi; ow < s.ow; ++ow) pixel(ow, true);
    }
    if (C8 < C) scalar::q8dw_rows_channels(a, r, r + 1, C8, C);
  }
}

}  // namespace

void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1) {
  if (a.s->kh == 3 && a.s->kw == 3) rows_impl<3, 3>(a, r0, r1);
  else if (a.s->kh == 5 && a.s->kw == 5) rows_impl<5, 5>(a, r0, r1);
  else rows_impl<0, 0>(a, r0, r1);
}

}  // namespace slimrt::kernels::detail::avx2

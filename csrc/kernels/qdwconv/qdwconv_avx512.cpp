// AVX-512 int8 depthwise convolution rows: 16 channels per zmm (masked tail). Per tap the 16
// input bytes are zero-extended to int32 (vpmovzxbd) and multiplied by the int32-widened weights
// with vpmaddwd (x's upper int16 is 0, so each lane is exactly x * w), then added (vpaddd).
// 3x3 kernels keep the nine weight vectors of a channel block in registers along the row.
// Epilogue as the scalar reference (qdwconv_scalar.cpp), with explicit FMAs where it has std::fma.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/qdwconv/qdwconv_internal.h"

namespace slimrt::kernels::detail::avx512 {
namespace {

// Saturating int32 -> u8 of 16 lanes, masked store. The register form of vpmovusdb plus a
// masked 16-byte store: the memory form (vpmovusdb m128{k}, zmm), which gcc otherwise folds the
// pair into, is microcoded and slow on Zen 4 (it was a third of the int8 GEMM epilogue's time).
// The empty asm pins the packed bytes in a register so the two instructions stay separate.
inline void store_u8x16(uint8_t* p, __mmask16 m, __m512i v) {
  __m128i b = _mm512_cvtusepi32_epi8(v);
  __asm__("" : "+v"(b));
  _mm_mask_storeu_epi8(p, m, b);
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

inline __m512i load_u8x16(const uint8_t* p, __mmask16 m) { return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)); }

// Epilogue of one pixel's 16 (masked) channels.
inline void finish(const Q8DwArgs& a, __m512i acc, __m512i zsum, __m512 mul, __m512 bias, int64_t p, int64_t c,
                   __mmask16 m) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, zsum)), mul, bias);
  if (a.residual) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, a.residual + p * a.ldr + c));
  if (a.residual_u8) {
    const __m512 rq = _mm512_cvtepi32_ps(load_u8x16(a.residual_u8 + p * a.ldr + c, m));
    y = _mm512_fmadd_ps(_mm512_sub_ps(rq, _mm512_set1_ps(a.res_zero)), _mm512_set1_ps(a.res_scale), y);
  }
  switch (a.act) {
    case Act::Relu: y = _mm512_max_ps(zero, y); break;
    case Act::Relu6: y = _mm512_min_ps(_mm512_set1_ps(6.f), _mm512_max_ps(zero, y)); break;
    case Act::LeakyRelu:
      y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), y, _mm512_set1_ps(a.alpha));
      break;
    default: break;
  }
  const int64_t C = a.s->c;
  if (a.out_u8) {
    __m512 t = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(a.inv_out_scale)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    t = _mm512_add_ps(t, _mm512_set1_ps(a.out_zero));
    t = _mm512_min_ps(_mm512_max_ps(t, zero), _mm512_set1_ps(255.f));  // NaN -> 0
    store_u8x16(static_cast<uint8_t*>(a.y) + p * C + c, m, _mm512_cvtps_epi32(t));
  } else {
    _mm512_mask_storeu_ps(static_cast<float*>(a.y) + p * C + c, m, y);
  }
}

// KH, KW > 0: compile-time kernel size (weights in registers); 0: run-time.
template <int KH, int KW>
void rows_impl(const Q8DwArgs& a, int64_t r0, int64_t r1) {
  const DwConv2dShape& s = *a.s;
  const int kh_n = KH ? KH : s.kh, kw_n = KW ? KW : s.kw;
  const int64_t C = s.c;
  const __m512i zx = _mm512_set1_epi32(a.x_zero);
  // ow range whose taps are all inside the image horizontally
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
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 m = tail_mask(C - c);
      __m512i wv[KH && KW ? KH * KW : 1];
      if (KH && KW)
        for (int t = 0; t < KH * KW; ++t) wv[t] = _mm512_load_si512(a.w + t * a.ldw + c);
      auto wtap = [&](int t) { return (KH && KW) ? wv[t] : _mm512_load_si512(a.w + t * a.ldw + c); };
      const __m512i zsum = _mm512_mullo_epi32(zx, _mm512_load_si512(a.wsum + c));
      const __m512 mul = _mm512_maskz_loadu_ps(m, a.mul + c);
      const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(m, a.bias + c) : _mm512_setzero_ps();
      auto pixel = [&](int64_t ow, bool checked) {
        __m512i acc = _mm512_setzero_si512();
        const int64_t iw0 = ow * s.sw - s.pl;
        for (int kh = 0; kh < kh_n; ++kh) {
          const uint8_t* row = xrow[kh];
          for (int kw = 0; kw < kw_n; ++kw) {
            const int64_t iw = iw0 + kw * s.dw;
            __m512i xv;
            if (row && (!checked || (iw >= 0 && iw < s.w))) xv = load_u8x16(row + iw * C + c, m);
            else xv = zx;
            acc = _mm512_add_epi32(acc, _mm512_madd_epi16(xv, wtap(kh * kw_n + kw)));
          }
        }
        finish(a, acc, zsum, mul, bias, r * s.ow + ow, c, m);
      };
      for (int64_t ow = 0; ow < ow_lo; ++ow) pixel(ow, true);
      for (int64_t ow = ow_lo; ow < ow_hi; ++ow) pixel(ow, false);
      for (int64_t ow = ow_hi; ow < s.ow; ++ow) pixel(ow, true);
    }
  }
}

}  // namespace

void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1) {
  if (a.s->kh == 3 && a.s->kw == 3) rows_impl<3, 3>(a, r0, r1);
  else if (a.s->kh == 5 && a.s->kw == 5) rows_impl<5, 5>(a, r0, r1);
  else rows_impl<0, 0>(a, r0, r1);
}

}  // namespace slimrt::kernels::detail::avx512

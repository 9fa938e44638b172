// Scalar reference of the int8 depthwise convolution (see qdwconv.h for the rounding rules; the
// SIMD files must agree bit for bit: the same int32 sums, std::fma where they use FMA).
#include <cmath>

#include "kernels/qdwconv/qdwconv_internal.h"

namespace slimrt::kernels::detail::scalar {

void q8dw_rows_channels(const Q8DwArgs& a, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const DwConv2dShape& s = *a.s;
  const int64_t C = s.c;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / s.oh, oh = r % s.oh;
    for (int64_t ow = 0; ow < s.ow; ++ow) {
      const int64_t p = r * s.ow + ow;  // flat output pixel
      for (int64_t c = c0; c < c1; ++c) {
        int32_t acc = 0;
        for (int kh = 0; kh < s.kh; ++kh) {
          const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
          for (int kw = 0; kw < s.kw; ++kw) {
            const int64_t iw = ow * s.sw - s.pl + kw * s.dw;
            const bool inside = ih >= 0 && ih < s.h && iw >= 0 && iw < s.w;
            const int32_t xv = inside ? a.x[((n * s.h + ih) * s.w + iw) * C + c] : a.x_zero;
            acc += xv * a.w[(kh * s.kw + kw) * a.ldw + c];
          }
        }
        const int32_t corr = acc - a.x_zero * a.wsum[c];
        float y = std::fma(static_cast<float>(corr), a.mul[c], a.bias ? a.bias[c] : 0.f);
        if (a.residual) y += a.residual[p * a.ldr + c];
        if (a.residual_u8) y = std::fma(static_cast<float>(a.residual_u8[p * a.ldr + c]) - a.res_zero, a.res_scale, y);
        switch (a.act) {
          case Act::Relu: y = y < 0.f ? 0.f : y; break;
          case Act::Relu6: y = y < 0.f ? 0.f : (y > 6.f ? 6.f : y); break;
          case Act::LeakyRelu: y = y < 0.f ? a.alpha * y : y; break;
          default: break;
        }
        if (a.out_u8) {
          float t = std::nearbyint(y * a.inv_out_scale) + a.out_zero;
          if (!(t >= 0.f)) t = 0.f;  // also NaN
          if (t > 255.f) t = 255.f;
          static_cast<uint8_t*>(a.y)[p * C + c] = static_cast<uint8_t>(t);
        } else {
          static_cast<float*>(a.y)[p * C + c] = y;
        }
      }
    }
  }
}

void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1) { q8dw_rows_channels(a, r0, r1, 0, a.s->c); }

}  // namespace slimrt::kernels::detail::scalar

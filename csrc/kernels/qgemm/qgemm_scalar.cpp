// Scalar reference pieces of the int8 GEMM: a 4x4 microkernel on B packed [N/4][Kp][4]
// (kg = 1), the epilogue, quantization and min/max. Plain C++; the SIMD files must agree
// with these bit for bit (same operation order, std::fma where they use FMA).
#include <cmath>
#include <cstring>

#include "kernels/qgemm/qgemm_internal.h"

namespace slimrt::kernels::detail::scalar {

void q8_gemm_4x4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  const uint8_t* a8 = static_cast<const uint8_t*>(a);
  int32_t c[4][4] = {};
  for (int64_t k = 0; k < kgroups; ++k) {
    for (int r = 0; r < rows; ++r) {
      const int32_t av = a8[r * lda + k];
      for (int j = 0; j < 4; ++j) c[r][j] += av * static_cast<int32_t>(b[k * 4 + j]);
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < 4; ++j) acc[r * 4 + j] = c[r][j];
}

static inline float act_inline(float y, Act act, float alpha) {
  switch (act) {
    case Act::Relu: return y < 0.f ? 0.f : y;
    case Act::Relu6: y = y < 0.f ? 0.f : y; return y > 6.f ? 6.f : y;
    case Act::LeakyRelu: return y < 0.f ? alpha * y : y;
    default: return y;
  }
}

static inline float quant_one(float x, float inv, float zero) {
  float t = std::nearbyint(x * inv) + zero;
  if (!(t >= 0.f)) t = 0.f;  // also NaN
  if (t > 255.f) t = 255.f;
  return t;
}

void q8_epilogue(const Q8Tile& t) {
  for (int r = 0; r < t.rows; ++r) {
    const int32_t za = t.a_zero[r * t.a_step];
    const float as = t.a_scale ? t.a_scale[r * t.a_step] : 1.f;
    const int32_t* acc = t.acc + r * t.ldacc;
    for (int j = 0; j < t.nv; ++j) {
      // int32 wrap-around is harmless: the true result fits (see qgemm.h), so compute in uint32.
      const int32_t corr = static_cast<int32_t>(static_cast<uint32_t>(acc[j]) -
                                                static_cast<uint32_t>(za) * static_cast<uint32_t>(t.colsum[j]));
      if (t.kind == Q8Out::Acc32) {
        static_cast<int32_t*>(t.out)[r * t.ldo + j] = corr;
        continue;
      }
      float y = std::fma(static_cast<float>(corr), as * t.w_scale[j], t.bias ? t.bias[j] : 0.f);
      if (t.residual) y += t.residual[r * t.ldr + j];
      y = act_inline(y, t.act, t.alpha);
      if (t.kind == Q8Out::F32)
        static_cast<float*>(t.out)[r * t.ldo + j] = y;
      else
        static_cast<uint8_t*>(t.out)[r * t.ldo + j] =
            static_cast<uint8_t>(quant_one(y, t.inv_out_scale, t.out_zero));
    }
  }
}

void q8_quantize_u8(const float* x, int64_t n, float inv_scale, float zero, void* out) {
  uint8_t* q = static_cast<uint8_t*>(out);
  for (int64_t i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(quant_one(x[i], inv_scale, zero));
}

void q8_quantize_i16(const float* x, int64_t n, float inv_scale, float zero, void* out) {
  int16_t* q = static_cast<int16_t*>(out);
  for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int16_t>(quant_one(x[i], inv_scale, zero));
}

void q8_minmax(const float* x, int64_t n, float* mn, float* mx) {
  float lo = 0.f, hi = 0.f;  // the range always includes 0
  for (int64_t i = 0; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  *mn = lo;
  *mx = hi;
}

}  // namespace slimrt::kernels::detail::scalar

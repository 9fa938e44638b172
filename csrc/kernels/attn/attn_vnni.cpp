// int8 attention heads on AVX-512 VNNI: byte codes, vpdpbusd (4 u8 x s8 products summed into exact int32 lanes).
// The u8 operand is the query codes + 128 (corrected with 128 * sum_d ck[j][d]) or the P codes.
#include <immintrin.h>

#include "kernels/eltwise/vec_avx512.h"
#include "kernels/attn/attn_impl.h"

namespace slimrt::kernels {
namespace {

__mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u); }

struct OpsVnni {
  using V = VecAvx512;
  using Code = int8_t;  // K/V codes s8; query (+128) and P codes are read as u8 by vpdpbusd
  static constexpr int G = 4;
  static constexpr int32_t kAOff = 128;
  static void quant(const float* x, int64_t n, float inv, const float* invv, int32_t off, int8_t* out) {
    const __m512 vi = _mm512_set1_ps(inv);
    const __m512i vo = _mm512_set1_epi32(off);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = lanes(n - i);
      __m512 s = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), invv ? _mm512_maskz_loadu_ps(m, invv + i) : vi);
      __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(s), vo);  // rint (MXCSR: nearest even)
      _mm512_mask_cvtepi32_storeu_epi8(out + i, m, q);          // low byte: codes fit in 8 bits
    }
  }
  static void pack_v(const float* const rows[4], const float* invv, int64_t D, int8_t* dst) {
    for (int64_t d = 0; d < D; d += 16) {
      const __mmask16 m = lanes(D - d);
      const __m512 iv = _mm512_maskz_loadu_ps(m, invv + d);
      __m512i quad = _mm512_setzero_si512();
      for (int t = 0; t < 4; ++t) {
        if (!rows[t]) continue;
        const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, rows[t] + d), iv));
        quad = _mm512_or_si512(quad, _mm512_slli_epi32(_mm512_and_si512(q, _mm512_set1_epi32(0xFF)), 8 * t));
      }
      _mm512_mask_storeu_epi32(dst + 4 * d, m, quad);  // lane d: the 4 keys' codes, key t in byte t
    }
  }
  template <int R>
  static void dot_r(const int8_t* a, int64_t lda, const int8_t* b, int64_t kg, int64_t N, int32_t* out,
                    int64_t ldo) {
    int64_t n0 = 0;
    for (; n0 + 32 <= N; n0 += 32) {
      __m512i acc[R][2];
      for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
      for (int64_t g = 0; g < kg; ++g) {
        const int8_t* bg = b + (g * N + n0) * 4;
        const __m512i b0 = _mm512_loadu_si512(bg);
        const __m512i b1 = _mm512_loadu_si512(bg + 64);
        for (int r = 0; r < R; ++r) {
          int32_t quad;
          std::memcpy(&quad, a + r * lda + g * 4, 4);
          const __m512i av = _mm512_set1_epi32(quad);
          acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
          acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
        }
      }
      for (int r = 0; r < R; ++r) {
        _mm512_storeu_si512(out + r * ldo + n0, acc[r][0]);
        _mm512_storeu_si512(out + r * ldo + n0 + 16, acc[r][1]);
      }
    }
    for (; n0 < N; n0 += 16) {
      const __mmask16 m = lanes(N - n0);
      __m512i acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
      for (int64_t g = 0; g < kg; ++g) {
        const __m512i b0 = _mm512_maskz_loadu_epi32(m, b + (g * N + n0) * 4);
        for (int r = 0; r < R; ++r) {
          int32_t quad;
          std::memcpy(&quad, a + r * lda + g * 4, 4);
          acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(quad), b0);
        }
      }
      for (int r = 0; r < R; ++r) _mm512_mask_storeu_epi32(out + r * ldo + n0, m, acc[r]);
    }
  }
  static void dot(const int8_t* a, int64_t lda, int R, const int8_t* b, int64_t kg, int64_t N, int32_t* out,
                  int64_t ldo) {
    switch (R) {
      case 4: dot_r<4>(a, lda, b, kg, N, out, ldo); break;
      case 3: dot_r<3>(a, lda, b, kg, N, out, ldo); break;
      case 2: dot_r<2>(a, lda, b, kg, N, out, ldo); break;
      default: dot_r<1>(a, lda, b, kg, N, out, ldo); break;
    }
  }
  static void scale_row(const int32_t* acc, const int32_t* corr, int32_t off, float a_scale, const float* b_scale,
                        int64_t n, float* y) {
    const __m512 as = _mm512_set1_ps(a_scale);
    const __m512i vo = _mm512_set1_epi32(off);
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 m = lanes(n - j);
      __m512i a = _mm512_maskz_loadu_epi32(m, acc + j);
      if (corr) a = _mm512_sub_epi32(a, _mm512_mullo_epi32(vo, _mm512_maskz_loadu_epi32(m, corr + j)));
      const __m512 s = _mm512_mul_ps(as, _mm512_maskz_loadu_ps(m, b_scale + j));
      _mm512_mask_storeu_ps(y + j, m, _mm512_mul_ps(_mm512_cvtepi32_ps(a), s));
    }
  }
};

}  // namespace

namespace detail {
const AttnKernels& attn_q8_vnni() {
  static const AttnKernels k{"avx512vnni", [](const AttnHead& h, void* ws, const EltwiseKernels& kt) {
                                 Q8AttnImpl<OpsVnni>::head(h, ws, kt);
                               }};
  return k;
}
}  // namespace detail
}  // namespace slimrt::kernels

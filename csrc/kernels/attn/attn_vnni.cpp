// int8 attention heads on AVX-512 VNNI: byte codes, vpdpbusd (4 u8 x s8 products summed into exact int32 lanes).
// The u8 operand is the query codes + 128 (corrected with 128 * sum_d ck[j][d]) or the P codes.
#include <immintrin.h>

#include "kernels/eltwise/vec_avx512.h"
#include "kernels/attn/attn_impl.h"

namespace slimrt::kernels {
namespace {

__mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u); }

struct IntVnni {  // 16 int32 lanes; a lane's group is four byte codes (u8 from A, s8 from B)
  using T = __m512i;
  static constexpr int L = 16;
  static T zero() { return _mm512_setzero_si512(); }
  static T load(const void* p) { return _mm512_loadu_si512(p); }
  static T load_n(const void* p, int n) { return _mm512_maskz_loadu_epi32(lanes(n), p); }
  static T bcast(int32_t v) { return _mm512_set1_epi32(v); }
  static T step(T acc, T a, T b) { return _mm512_dpbusd_epi32(acc, a, b); }
  static void store(int32_t* p, T v) { _mm512_storeu_si512(p, v); }
  static void store_n(int32_t* p, T v, int n) { _mm512_mask_storeu_epi32(p, lanes(n), v); }
  static T sub(T a, T b) { return _mm512_sub_epi32(a, b); }
  static T mullo(T a, T b) { return _mm512_mullo_epi32(a, b); }
  static __m512 to_float(T v) { return _mm512_cvtepi32_ps(v); }
};

struct OpsVnni {
  using V = VecAvx512;
  using I = IntVnni;
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

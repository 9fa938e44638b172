// Attention heads on AVX2: fp32 (4 rows x 2 ymm of keys / columns) and int8 with int16 codes,
// vpmaddwd (pairs of int16 products summed into exact int32 lanes; also the int8 kernel of AVX-512
// CPUs without VNNI).
#include <immintrin.h>

#include "kernels/eltwise/vec_avx2.h"
#include "kernels/attn/attn_impl.h"

namespace slimrt::kernels {
namespace {

__m256i tail_mask(int64_t n) {  // first n of 8 int32 lanes
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

struct IntAvx2 {  // 8 int32 lanes; a lane's group is two int16 codes
  using T = __m256i;
  static constexpr int L = 8;
  static T zero() { return _mm256_setzero_si256(); }
  static T load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static T load_n(const void* p, int n) { return _mm256_maskload_epi32(static_cast<const int*>(p), tail_mask(n)); }
  static T bcast(int32_t v) { return _mm256_set1_epi32(v); }
  static T step(T acc, T a, T b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
  static void store(int32_t* p, T v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  static void store_n(int32_t* p, T v, int n) { _mm256_maskstore_epi32(p, tail_mask(n), v); }
  static T sub(T a, T b) { return _mm256_sub_epi32(a, b); }
  static T mullo(T a, T b) { return _mm256_mullo_epi32(a, b); }
  static __m256 to_float(T v) { return _mm256_cvtepi32_ps(v); }
};

struct OpsAvx2 {
  using V = VecAvx2;
  using I = IntAvx2;
  using Code = int16_t;
  static constexpr int G = 2;
  static constexpr int32_t kAOff = 0;
  static void quant(const float* x, int64_t n, float inv, const float* invv, int32_t off, int16_t* out) {
    const __m256 vi = _mm256_set1_ps(inv);
    const __m256i vo = _mm256_set1_epi32(off);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      __m256 s = _mm256_mul_ps(_mm256_loadu_ps(x + i), invv ? _mm256_loadu_ps(invv + i) : vi);
      __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(s), vo);  // rint (MXCSR: nearest even)
      __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), w);
    }
    for (; i < n; ++i) {
      float r = std::nearbyint(x[i] * (invv ? invv[i] : inv));
      out[i] = static_cast<int16_t>((r == r ? static_cast<int32_t>(r) : 0) + off);
    }
  }
  static void pack_v(const float* const rows[2], const float* invv, int64_t D, int16_t* dst) {
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) {
      const __m256 iv = _mm256_loadu_ps(invv + d);
      const __m256i lo = rows[0] ? _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(rows[0] + d), iv)) : _mm256_setzero_si256();
      const __m256i hi = rows[1] ? _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(rows[1] + d), iv)) : _mm256_setzero_si256();
      // lane d: (row 0 code, row 1 code) as one int16 pair
      const __m256i pair = _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(hi, 16));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * d), pair);
    }
    for (; d < D; ++d)
      for (int t = 0; t < 2; ++t) {
        float r = rows[t] ? std::nearbyint(rows[t][d] * invv[d]) : 0.f;
        dst[2 * d + t] = static_cast<int16_t>(r == r ? static_cast<int32_t>(r) : 0);
      }
  }
};

}  // namespace

namespace detail {
const AttnKernels& attn_q8_avx2() {
  static const AttnKernels k{"avx2", [](const AttnHead& h, void* ws, const EltwiseKernels& kt) {
                                 Q8AttnImpl<OpsAvx2>::head(h, ws, kt);
                               }};
  return k;
}
const AttnKernels& attn_f32_avx2() {
  static const AttnKernels k{"avx2", [](const AttnHead& h, void* ws, const EltwiseKernels& kt) {
                               F32AttnImpl<VecAvx2>::head(h, ws, kt);
                             }};
  return k;
}
}  // namespace detail
}  // namespace slimrt::kernels

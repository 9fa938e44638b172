// AVX2 int8 GEMM (no VNNI), epilogue and quantization loops.
//
// Microkernel 6x16c2: B panel [Kp/2][16][2] s8. Per K pair: two 16-byte loads of B, each
// sign-extended to 16 int16 (vpmovsxbw), one 32-bit broadcast per row of A (A held as
// int16 0..255, two K values per lane), vpmaddwd + vpaddd into 6x2 ymm accumulators
// (12 + 2 B + broadcast + product = 16 registers).
// Why vpmaddwd and not vpmaddubsw: vpmaddubsw adds two u8*s8 products into a SATURATING
// int16, and 2*255*127 = 64770 > 32767, so ordinary activations/weights would be clipped.
// vpmaddwd multiplies int16 pairs and adds them into an int32 exactly (|pair| <= 2*255*128).
// Rows <= 2 (GEMV) use two accumulator sets over even/odd K pairs to hide the add latency.
// The K loop is qgemm_impl.h's (policy Q8C2Avx2 below).
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/qgemm/qgemm_internal.h"

namespace slimrt::kernels::detail::avx2 {

#include "kernels/qgemm/qgemm_impl.h"

namespace {

// The microkernel's policy (qgemm_impl.h): 8 int32 lanes; a B vector is 16 s8 (8 columns x 2 K)
// sign-extended to int16; vpmaddwd + vpaddd.
struct Q8C2Avx2 {
  using I = __m256i;
  using A = int16_t;
  static constexpr int W = 8, kAStep = 2, kBBytes = 16, kSplit = 4;  // two sets for rows <= 2
  static I zero() { return _mm256_setzero_si256(); }
  static I bcast(int32_t v) { return _mm256_set1_epi32(v); }
  static I load_b(const int8_t* p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static I dot(I c, I a, I b) { return _mm256_add_epi32(c, _mm256_madd_epi16(a, b)); }
  static I add(I a, I b) { return _mm256_add_epi32(a, b); }
  static void store(int32_t* p, I v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
};

inline __m256i lane_mask(int64_t left) {  // lanes < left all-ones
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(left < 8 ? left : 8)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline __m256 quant8(__m256 y, __m256 inv, __m256 zero) {
  __m256 t = _mm256_round_ps(_mm256_mul_ps(y, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  t = _mm256_add_ps(t, zero);
  t = _mm256_max_ps(t, _mm256_setzero_ps());  // NaN -> 0 (max returns the second operand)
  return _mm256_min_ps(t, _mm256_set1_ps(255.f));
}

// 8 int32 values in 0..255 -> 8 bytes / 8 int16 (in order).
inline __m128i to_u8x8(__m256i v) {
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_packus_epi16(w, w);
}
inline __m128i to_i16x8(__m256i v) {
  return _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

}  // namespace

void q8_gemm_6x16c2(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch<Q8C2Avx2, 2, 6>(kgroups, a, lda, rows, b, acc);
}

// Whole 8-lane groups use plain loads and stores: vpmaskmov costs far more on AMD (the fp32 GEMM's
// 1344 x 16 x 96 tiles ran 1.7x faster without it); only a ragged last group is masked.
namespace {
inline __m256i ld_i32(const int32_t* p, __m256i m, bool whole) {
  return whole ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)) : _mm256_maskload_epi32(p, m);
}
inline __m256 ld_f32(const float* p, __m256i m, bool whole) {
  return whole ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}
}  // namespace

void q8_epilogue(const Q8Tile& t) {
  const __m256 zero_v = _mm256_setzero_ps(), six = _mm256_set1_ps(6.f), alpha = _mm256_set1_ps(t.alpha);
  const __m256 inv_os = _mm256_set1_ps(t.inv_out_scale), oz = _mm256_set1_ps(t.out_zero);
  for (int r = 0; r < t.rows; ++r) {
    const __m256i za = _mm256_set1_epi32(t.a_zero[r * t.a_step]);
    const __m256 as = _mm256_set1_ps(t.a_scale ? t.a_scale[r * t.a_step] : 1.f);
    const int32_t* acc = t.acc + r * t.ldacc;
    for (int j = 0; j < t.nv; j += 8) {
      const int left = t.nv - j;
      const __m256i m = lane_mask(left);
      const bool whole = left >= 8;
      const __m256i corr = _mm256_sub_epi32(ld_i32(acc + j, m, whole),
                                            _mm256_mullo_epi32(za, ld_i32(t.colsum + j, m, whole)));
      if (t.kind == Q8Out::Acc32) {
        int32_t* o = static_cast<int32_t*>(t.out) + r * t.ldo + j;
        if (whole) _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), corr);
        else _mm256_maskstore_epi32(o, m, corr);
        continue;
      }
      const __m256 s = _mm256_mul_ps(as, ld_f32(t.w_scale + j, m, whole));
      const __m256 bias = t.bias ? ld_f32(t.bias + j, m, whole) : zero_v;
      __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(corr), s, bias);
      if (t.residual) y = _mm256_add_ps(y, ld_f32(t.residual + r * t.ldr + j, m, whole));
      switch (t.act) {
        case Act::Relu: y = _mm256_max_ps(zero_v, y); break;
        case Act::Relu6: y = _mm256_min_ps(six, _mm256_max_ps(zero_v, y)); break;
        case Act::LeakyRelu:
          y = _mm256_blendv_ps(y, _mm256_mul_ps(y, alpha), _mm256_cmp_ps(y, zero_v, _CMP_LT_OQ));
          break;
        default: break;
      }
      if (t.kind == Q8Out::F32) {
        float* o = static_cast<float*>(t.out) + r * t.ldo + j;
        if (whole) _mm256_storeu_ps(o, y);
        else _mm256_maskstore_ps(o, m, y);
      } else {
        const __m128i q = to_u8x8(_mm256_cvtps_epi32(quant8(y, inv_os, oz)));
        uint8_t* dst = static_cast<uint8_t*>(t.out) + r * t.ldo + j;
        if (left >= 8) {
          _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), q);
        } else {
          alignas(16) uint8_t tmp[16];
          _mm_store_si128(reinterpret_cast<__m128i*>(tmp), q);
          std::memcpy(dst, tmp, left);
        }
      }
    }
  }
}

void q8_quantize_u8(const float* x, int64_t n, float inv_scale, float zero, void* out) {
  uint8_t* q = static_cast<uint8_t*>(out);
  const __m256 inv = _mm256_set1_ps(inv_scale), z = _mm256_set1_ps(zero);
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t left = n - i;
    const __m256i m = lane_mask(left);
    const __m128i v = to_u8x8(_mm256_cvtps_epi32(quant8(ld_f32(x + i, m, left >= 8), inv, z)));
    if (left >= 8) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), v);
    } else {
      alignas(16) uint8_t tmp[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), v);
      std::memcpy(q + i, tmp, left);
    }
  }
}

void q8_quantize_i16(const float* x, int64_t n, float inv_scale, float zero, void* out) {
  int16_t* q = static_cast<int16_t*>(out);
  const __m256 inv = _mm256_set1_ps(inv_scale), z = _mm256_set1_ps(zero);
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t left = n - i;
    const __m256i m = lane_mask(left);
    const __m128i v = to_i16x8(_mm256_cvtps_epi32(quant8(_mm256_maskload_ps(x + i, m), inv, z)));
    if (left >= 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), v);
    } else {
      alignas(16) int16_t tmp[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), v);
      std::memcpy(q + i, tmp, left * sizeof(int16_t));
    }
  }
}

void q8_minmax(const float* x, int64_t n, float* mn, float* mx) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();  // the range always includes 0
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lo = _mm256_min_ps(v, lo);  // NaN in x is skipped (min/max return the second operand)
    hi = _mm256_max_ps(v, hi);
  }
  alignas(32) float l[8], h[8];
  _mm256_store_ps(l, lo);
  _mm256_store_ps(h, hi);
  float a = l[0], b = h[0];
  for (int j = 1; j < 8; ++j) {
    a = l[j] < a ? l[j] : a;
    b = h[j] > b ? h[j] : b;
  }
  for (; i < n; ++i) {
    a = x[i] < a ? x[i] : a;
    b = x[i] > b ? x[i] : b;
  }
  *mn = a;
  *mx = b;
}

}  // namespace slimrt::kernels::detail::avx2

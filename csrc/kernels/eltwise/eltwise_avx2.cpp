// AVX2 + FMA instantiation of the eltwise kernels (8 lanes), and the 8x8
// register-tile fp32 transpose that the AVX-512 table reuses.
#include <immintrin.h>

#include "kernels/eltwise/vec_avx2.h"
#include "kernels/eltwise/eltwise_impl.h"

namespace slimrt::kernels {

namespace {

// One 8x8 tile: dst rows j..j+7, columns i..i+7 = src rows i..i+7, columns j..j+7 (in registers:
// unpack / shuffle / permute2f128).
inline void tile8x8(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t i, int64_t j) {
  const float* s = src + i * lds + j;
  __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + lds);
  __m256 r2 = _mm256_loadu_ps(s + 2 * lds), r3 = _mm256_loadu_ps(s + 3 * lds);
  __m256 r4 = _mm256_loadu_ps(s + 4 * lds), r5 = _mm256_loadu_ps(s + 5 * lds);
  __m256 r6 = _mm256_loadu_ps(s + 6 * lds), r7 = _mm256_loadu_ps(s + 7 * lds);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  float* d = dst + j * ldd + i;
  _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

}  // namespace

// dst[j*ldd + i] = src[i*lds + j] for a rows x cols block; 8x8 register tiles, scalar edges.
void transpose2d_f32_avx2(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows,
                          int64_t cols) {
  constexpr int64_t B = 64;  // cache block (64x64 floats = 16 KiB)
  // The tiles of a block run along the side whose rows are farther apart, so each of its rows gets
  // whole cache lines in turn: 8 tiles of one 8-row strip touch 64 rows of the other side, and rows
  // a multiple of 4 KiB apart share one L1 set, so half-written (or half-read) lines are evicted before
  // their other half comes (1 thread, NHWC -> NCHW 64x64x128: 244-291 -> 124-190 us; NCHW -> NHWC
  // 512x14x14: 30-38 -> 12-14 us).
  const bool along_i = ldd > lds;
  for (int64_t i0 = 0; i0 < rows; i0 += B) {
    const int64_t i1 = i0 + B < rows ? i0 + B : rows;
    for (int64_t j0 = 0; j0 < cols; j0 += B) {
      const int64_t j1 = j0 + B < cols ? j0 + B : cols;
      const int64_t i8 = i0 + (i1 - i0) / 8 * 8, j8 = j0 + (j1 - j0) / 8 * 8;  // ends of the whole tiles
      if (along_i) {
        for (int64_t j = j0; j < j8; j += 8)
          for (int64_t i = i0; i < i8; i += 8) tile8x8(src, lds, dst, ldd, i, j);
      } else {
        for (int64_t i = i0; i < i8; i += 8)
          for (int64_t j = j0; j < j8; j += 8) tile8x8(src, lds, dst, ldd, i, j);
      }
      for (int64_t i = i0; i < i8; ++i)  // ragged columns of the whole-row strips
        for (int64_t j = j8; j < j1; ++j) dst[j * ldd + i] = src[i * lds + j];
      for (int64_t i = i8; i < i1; ++i)  // ragged rows
        for (int64_t j = j0; j < j1; ++j) dst[j * ldd + i] = src[i * lds + j];
    }
  }
}

const EltwiseKernels& eltwise_kernels_avx2() {
  static const EltwiseKernels k = [] {
    EltwiseKernels t = EltwiseImpl<VecAvx2>::table();
    t.transpose2d = &transpose2d_f32_avx2;
    return t;
  }();
  return k;
}
}  // namespace slimrt::kernels

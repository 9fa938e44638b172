// AVX-512 instantiation of the eltwise kernels (16 lanes, masked tails). The
// fp32 2-D transpose reuses the AVX2 8x8 register tiles (memory bound), except for three
// rows into triples -- an RGB image's planes into NHWC pixels, where the 8x8 tiles fall back to
// scalar copies -- which runs 16 pixels at a time with two permutes per output vector.
#include "kernels/eltwise/vec_avx512.h"
#include "kernels/eltwise/eltwise_impl.h"

namespace slimrt::kernels {
void transpose2d_f32_avx2(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows,
                          int64_t cols);

namespace {

// dst[3j + i] = plane i [j] for j < 16.
inline void interleave3(const float* a, const float* b, const float* c, float* dst) {
  const __m512 va = _mm512_loadu_ps(a), vb = _mm512_loadu_ps(b), vc = _mm512_loadu_ps(c);
  // Output lane l of vector k is element e = 16k + l: pixel e / 3 of plane e % 3; planes 0 and 1 come
  // from one two-source permute (b's lanes indexed + 16), plane 2 is merged by a masked permute.
  const __m512i ab0 = _mm512_setr_epi32(0, 16, 0, 1, 17, 0, 2, 18, 0, 3, 19, 0, 4, 20, 0, 5);
  const __m512i ab1 = _mm512_setr_epi32(21, 0, 6, 22, 0, 7, 23, 0, 8, 24, 0, 9, 25, 0, 10, 26);
  const __m512i ab2 = _mm512_setr_epi32(0, 11, 27, 0, 12, 28, 0, 13, 29, 0, 14, 30, 0, 15, 31, 0);
  const __m512i c0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0);
  const __m512i c1 = _mm512_setr_epi32(0, 5, 0, 0, 6, 0, 0, 7, 0, 0, 8, 0, 0, 9, 0, 0);
  const __m512i c2 = _mm512_setr_epi32(10, 0, 0, 11, 0, 0, 12, 0, 0, 13, 0, 0, 14, 0, 0, 15);
  _mm512_storeu_ps(dst, _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(va, ab0, vb), 0x4924, c0, vc));
  _mm512_storeu_ps(dst + 16, _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(va, ab1, vb), 0x2492, c1, vc));
  _mm512_storeu_ps(dst + 32, _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(va, ab2, vb), 0x9249, c2, vc));
}

void transpose2d_f32_avx512(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows, int64_t cols) {
  if (rows != 3 || ldd != 3) return transpose2d_f32_avx2(src, lds, dst, ldd, rows, cols);
  int64_t j = 0;
  for (; j + 16 <= cols; j += 16) interleave3(src + j, src + lds + j, src + 2 * lds + j, dst + 3 * j);
  for (; j < cols; ++j)
    for (int64_t i = 0; i < 3; ++i) dst[j * 3 + i] = src[i * lds + j];
}

}  // namespace

const EltwiseKernels& eltwise_kernels_avx512() {
  static const EltwiseKernels k = [] {
    EltwiseKernels t = EltwiseImpl<VecAvx512>::table();
    t.transpose2d = &transpose2d_f32_avx512;
    return t;
  }();
  return k;
}
}  // namespace slimrt::kernels

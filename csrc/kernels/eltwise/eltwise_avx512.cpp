// AVX-512 instantiation of the eltwise kernels (16 lanes, masked tails). The
// fp32 2-D transpose reuses the AVX2 8x8 register tiles (memory bound).
#include "kernels/eltwise/vec_avx512.h"
#include "kernels/eltwise/eltwise_impl.h"

namespace slimrt::kernels {
void transpose2d_f32_avx2(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows,
                          int64_t cols);

const EltwiseKernels& eltwise_kernels_avx512() {
  static const EltwiseKernels k = [] {
    EltwiseKernels t = EltwiseImpl<VecAvx512>::table();
    t.transpose2d = &transpose2d_f32_avx2;
    return t;
  }();
  return k;
}
}  // namespace slimrt::kernels

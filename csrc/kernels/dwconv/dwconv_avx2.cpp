// avx2 instantiation of the NHWC depthwise convolution (generic body: dwconv_impl.h).
#include "kernels/eltwise/vec_avx2.h"
#include "kernels/dwconv/dwconv_impl.h"

namespace {
struct StreamAvx2 {
  static void stream(float* p, VecAvx2::T v) { _mm256_stream_ps(p, v); }
  static void fence() { _mm_sfence(); }
};
}  // namespace

namespace slimrt::kernels {
const DwConvKernels& dwconv_kernels_avx2() {
  static const DwConvKernels k = DwConvImpl<VecAvx2, StreamAvx2>::table();
  return k;
}
}  // namespace slimrt::kernels

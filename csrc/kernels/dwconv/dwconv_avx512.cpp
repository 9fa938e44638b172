// avx512 instantiation of the NHWC depthwise convolution (generic body: dwconv_impl.h).
#include "kernels/eltwise/vec_avx512.h"
#include "kernels/dwconv/dwconv_impl.h"

namespace {
struct StreamAvx512 {
  static void stream(float* p, VecAvx512::T v) { _mm512_stream_ps(p, v); }
  static void fence() { _mm_sfence(); }
};
}  // namespace

namespace slimrt::kernels {
const DwConvKernels& dwconv_kernels_avx512() {
  static const DwConvKernels k = DwConvImpl<VecAvx512, StreamAvx512>::table();
  return k;
}
}  // namespace slimrt::kernels

// avx2 instantiation of the NHWC depthwise convolution (generic body: dwconv_impl.h).
#include "kernels/eltwise/vec_avx2.h"
#include "kernels/dwconv/dwconv_impl.h"

namespace slimrt::kernels {
const DwConvKernels& dwconv_kernels_avx2() {
  static const DwConvKernels k = DwConvImpl<VecAvx2>::table();
  return k;
}
}  // namespace slimrt::kernels

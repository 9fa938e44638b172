// scalar instantiation of the NHWC depthwise convolution (generic body: dwconv_impl.h).
#include "kernels/eltwise/vec_scalar.h"
#include "kernels/dwconv/dwconv_impl.h"

namespace slimrt::kernels {
const DwConvKernels& dwconv_kernels_scalar() {
  static const DwConvKernels k = DwConvImpl<VecScalar>::table();
  return k;
}
}  // namespace slimrt::kernels

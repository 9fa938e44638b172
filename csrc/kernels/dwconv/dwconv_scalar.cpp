// scalar instantiation of the NHWC depthwise convolution (generic body: dwconv_impl.h).
#include "kernels/eltwise/vec_scalar.h"
#include "kernels/dwconv/dwconv_impl.h"

namespace {
struct StreamScalar {  // no streaming stores on the reference path
  static void stream(float* p, VecScalar::T v) { *p = v; }
  static void fence() {}
};
}  // namespace

namespace slimrt::kernels {
const DwConvKernels& dwconv_kernels_scalar() {
  static const DwConvKernels k = DwConvImpl<VecScalar, StreamScalar>::table();
  return k;
}
}  // namespace slimrt::kernels

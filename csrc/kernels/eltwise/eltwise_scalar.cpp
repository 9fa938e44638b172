// Scalar (reference) instantiation of the eltwise kernels: baseline x86-64 flags.
#include "kernels/eltwise/vec_scalar.h"
#include "kernels/eltwise/eltwise_impl.h"

namespace slimrt::kernels {
const EltwiseKernels& eltwise_kernels_scalar() {
  static const EltwiseKernels k = EltwiseImpl<VecScalar>::table();
  return k;
}
}  // namespace slimrt::kernels

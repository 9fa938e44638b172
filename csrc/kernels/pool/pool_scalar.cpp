// scalar instantiation of the NHWC pooling kernels (generic body: pool_impl.h).
#include "kernels/eltwise/vec_scalar.h"
#include "kernels/pool/pool_impl.h"

namespace slimrt::kernels {
const PoolKernels& pool_kernels_scalar() {
  static const PoolKernels k = PoolImpl<VecScalar>::table();
  return k;
}
}  // namespace slimrt::kernels

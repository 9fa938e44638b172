// avx512 instantiation of the NHWC pooling kernels (generic body: pool_impl.h).
#include "kernels/eltwise/vec_avx512.h"
#include "kernels/pool/pool_impl.h"

namespace slimrt::kernels {
const PoolKernels& pool_kernels_avx512() {
  static const PoolKernels k = PoolImpl<VecAvx512>::table();
  return k;
}
}  // namespace slimrt::kernels

// AVX2+FMA instantiation of the direct NHWC convolution (conv_direct_impl.h):
// 8 output channels per ymm vector. Also used on AVX-512 machines for
// convolutions with <= 8 output channels per group (no wasted lanes).
#include "kernels/eltwise/vec_avx2.h"
#include "kernels/gemm/conv_direct_impl.h"

namespace slimrt::kernels::detail::avx2 {
static_assert(kConvNB == VecAvx2::W, "packed block width must match the vector width");
void f32_conv_direct_rows(const DirectConv& a, int64_t r0, int64_t r1) { ConvDirect<VecAvx2>::rows(a, r0, r1); }
}  // namespace slimrt::kernels::detail::avx2

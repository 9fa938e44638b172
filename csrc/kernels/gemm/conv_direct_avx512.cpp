// AVX-512 instantiation of the direct NHWC convolution (conv_direct_impl.h):
// 16 output channels per zmm vector, masked tails.
#include "kernels/eltwise/vec_avx512.h"
#include "kernels/gemm/conv_direct_impl.h"

namespace slimrt::kernels::detail::avx512 {
static_assert(kConvNB == VecAvx512::W, "packed block width must match the vector width");
void f32_conv_direct_rows(const DirectConv& a, int64_t r0, int64_t r1) { ConvDirect<VecAvx512>::rows(a, r0, r1); }
}  // namespace slimrt::kernels::detail::avx512

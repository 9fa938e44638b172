// AVX2 + FMA instantiation of the Winograd F(4x4, 3x3) transforms (winograd_impl.h): 8 channels per
// ymm vector, masked tails.
#include "kernels/eltwise/vec_avx2.h"
#include "kernels/gemm/winograd_impl.h"

namespace slimrt::kernels::detail::avx2 {
void f32_wino_input(const WinoInput& a, int64_t t0, int64_t t1) { Wino<VecAvx2>::input(a, t0, t1); }
void f32_wino_output(const WinoOutput& a, int64_t t0, int64_t t1) { Wino<VecAvx2>::output(a, t0, t1); }
}  // namespace slimrt::kernels::detail::avx2

// AVX-512 instantiation of the Winograd F(4x4, 3x3) transforms (winograd_impl.h): 16 channels per
// zmm vector, masked tails.
#include "kernels/eltwise/vec_avx512.h"
#include "kernels/gemm/winograd_impl.h"

namespace slimrt::kernels::detail::avx512 {
void f32_wino_input(const WinoInput& a, int64_t t0, int64_t t1) { Wino<VecAvx512>::input(a, t0, t1); }
void f32_wino_output(const WinoOutput& a, int64_t t0, int64_t t1) { Wino<VecAvx512>::output(a, t0, t1); }
}  // namespace slimrt::kernels::detail::avx512

// Activations on AVX2+FMA registers for the GEMM epilogue and apply_act_inplace(isa=avx2):
// the vmath.h functions (the one vector implementation, shared with the eltwise, depthwise
// and direct-conv kernels), 8 lanes, masked tails. Accuracy: see eltwise/vmath.h.
#include "kernels/eltwise/vec_avx2.h"
#include "kernels/eltwise/vmath.h"
#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels::detail::avx2 {
void f32_act_inplace(float* x, int64_t n, Act act, float alpha) { act_any<VecAvx2>(x, x, n, act, alpha); }
}  // namespace slimrt::kernels::detail::avx2

// fp32 attention heads on AVX-512: 4 query rows x 4 zmm of keys (scores), 8 rows x the head's
// columns (P v). Body: attn_impl.h.
#include <immintrin.h>

#include "kernels/eltwise/vec_avx512.h"
#include "kernels/attn/attn_impl.h"

namespace slimrt::kernels::detail {
const AttnKernels& attn_f32_avx512() {
  static const AttnKernels k{"avx512", [](const AttnHead& h, void* ws, const EltwiseKernels& kt) {
                               F32AttnImpl<VecAvx512>::head(h, ws, kt);
                             }};
  return k;
}
}  // namespace slimrt::kernels::detail

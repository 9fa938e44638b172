// AVX2 int8 depthwise convolution rows: 8 channels per ymm (vpmovzxbd of 8 input bytes,
// vpmaddwd with the int32-widened weights, vpaddd); channels past the last multiple of 8 run
// the scalar loop. Epilogue as the scalar reference, explicit FMAs where it has std::fma.
// Body and policy (Q8DwAvx2): qdwconv_impl.h.
#include <immintrin.h>

#include "kernels/eltwise/vec_avx2.h"
#include "kernels/qdwconv/qdwconv_internal.h"

namespace slimrt::kernels::detail::avx2 {

#include "kernels/qdwconv/qdwconv_impl.h"

void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1) { rows_any<Q8DwAvx2>(a, r0, r1); }

}  // namespace slimrt::kernels::detail::avx2

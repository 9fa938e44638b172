// AVX-512 int8 depthwise convolution rows: 16 channels per zmm (masked tail). Per tap the 16
// input bytes are zero-extended to int32 (vpmovzxbd) and multiplied by the int32-widened weights
// with vpmaddwd (x's upper int16 is 0, so each lane is exactly x * w), then added (vpaddd).
// 3x3 and 5x5 kernels keep the weight vectors of a channel block in registers along the row.
// Epilogue as the scalar reference (qdwconv_scalar.cpp), with explicit FMAs where it has std::fma.
// Body and policy (Q8DwAvx512): qdwconv_impl.h.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/eltwise/vec_avx512.h"
#include "kernels/qdwconv/qdwconv_internal.h"

namespace slimrt::kernels::detail::avx512 {

#include "kernels/qdwconv/qdwconv_impl.h"

void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1) { rows_any<Q8DwAvx512>(a, r0, r1); }

}  // namespace slimrt::kernels::detail::avx512

// Internal interface of the direct NHWC convolution (conv_direct_impl.h,
// conv_direct_<isa>.cpp), used by conv2d.cpp for convolutions with few output
// channels or a short reduction (K = KH*KW*Cg), where GEMM tiles would be
// mostly padding or im2col packing would cost more than the arithmetic.
//
// Vectorised over output channels: one vector holds NB consecutive output
// channels (8 with AVX2, 16 with AVX-512), NV vectors (<= 4) per channel block;
// P output pixels of a row share every weight load, each pixel's input value is
// broadcast. Weights are packed per group as [ob][kh][kw][c][NB] (ob = block of
// NB output channels, zero padded), 64-byte aligned.
//
// One input channel with <= 8 outputs (a grayscale first layer) is vectorised over output pixels
// instead (the row's inputs are consecutive floats), then transposed to NHWC in registers.
//
// Summation order per output element: kh, kw, c ascending, one FMA chain;
// it depends on the shape only (never on the thread count or the pixel block).
//
// Only POD structs and declarations here (the header is included by files
// compiled with different -m flags).
#pragma once
#include <cstdint>

#include "kernels/act.h"

namespace slimrt::kernels::detail {

struct DirectConv {
  const float* x;         // input image 0 at the group's first channel
  const float* w;         // packed weights of the group
  float* y;               // output image 0 at the group's first channel
  int64_t H, W, C;        // input height, width, channels of the group
  int64_t ldx;            // floats between input pixels (all channels)
  int64_t OH, OW, O;      // output height, width, channels of the group
  int64_t ldy;            // floats between output pixels
  int64_t KH, KW, sh, sw, dh, dw, pt, pl;
  const float* scale;     // [O] or null (group offset applied)
  const float* bias;      // [O] or null
  const float* residual;  // flat output pixel p at residual + p*ldr, or null
  int64_t ldr;
  Act act;
  float alpha;
  bool prefetch;          // input far bigger than the caches: fetch the next row's input rows ahead
  // A pixel's partial last channel vector may be stored whole, its extra lanes landing on the
  // next pixel's first channels before that pixel is stored: one group (ldy == O), all channel
  // blocks in one pass (O <= 2 vectors), and no residual aliasing y.
  bool spill;
};

// Output rows [r0, r1) of the flattened (n, oh) index, all channels of the group.
using DirectConvFn = void (*)(const DirectConv& a, int64_t r0, int64_t r1);

namespace avx2 {
constexpr int kConvNB = 8;
void f32_conv_direct_rows(const DirectConv& a, int64_t r0, int64_t r1);
}  // namespace avx2

namespace avx512 {
constexpr int kConvNB = 16;
void f32_conv_direct_rows(const DirectConv& a, int64_t r0, int64_t r1);
}  // namespace avx512

}  // namespace slimrt::kernels::detail

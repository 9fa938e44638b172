// Internal interface of the Winograd F(4x4, 3x3) convolution (winograd_impl.h,
// winograd_<isa>.cpp), used by conv2d.cpp for 3x3 stride-1 undilated ungrouped
// convolutions on NHWC tensors (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2016):
//
//   Y (4x4 output tile) = A^T [ (G g G^T) (.) (B^T d B) ] A
//
// for a 6x6 input patch d (zeros outside the image) at output tile origin
// (4 th - pad_t, 4 tw - pad_l). The 36 elementwise products, summed over the
// input channels, are 36 GEMMs (tiles x C) x (C x O) run by the fp32 GEMM
// microkernel on weights transformed and packed once (G g G^T per position).
// Tiles are numbered flat over (n, th, tw), TH = ceil(OH / 4), TW = ceil(OW / 4).
//
// The transforms run vectorised over channels (8 or 16 lanes, masked tails).
// Buffers: transformed inputs v[xi * plane + t * ld + c] (xi = 6 i + j, t = tile
// of the block) and GEMM results m[xi * plane + t * ld + o].
//
// Rounding: the transforms reorder and scale the sums; the error grows with the
// transforms' coefficients (up to 5 in B, 8 in A) and comes from the whole tile:
// an output differs from the direct sum by up to ~1.2e-6 sqrt(9 C) x the largest
// sum |x| |w| of its 4x4 output tile (so a pixel whose own taps are mostly padding
// carries its neighbours' rounding); tested against a float64 reference with 4x the
// direct path's bound taken on that tile maximum.
//
// Only POD structs and declarations here (included by files built with different -m flags).
#pragma once
#include <cstdint>

#include "kernels/act.h"

namespace slimrt::kernels::detail {

constexpr int kWinoPoints = 36;  // 6 x 6 transform positions
constexpr int kWinoOut = 4;      // output tile side

struct WinoInput {
  const float* x;        // NHWC input
  int64_t H, W, C;
  int64_t TH, TW;        // tiles per column / row
  int64_t pt, pl;        // top / left padding
  float* v;              // block buffer, see above
  int64_t ld, plane;     // floats between tiles / between positions
};

struct WinoOutput {
  const float* m;        // block buffer of GEMM results
  int64_t ld, plane;
  float* y;              // NHWC output
  int64_t OH, OW, O;
  int64_t o_begin, o_end;  // the output channels to write: [o_begin, o_end), o_begin a multiple of 16
  int64_t TH, TW;
  const float* scale;    // [O] or null
  const float* bias;     // [O] or null
  const float* residual; // output pixel p at residual + p * ldr, or null
  int64_t ldr;
  Act act;
  float alpha;
};

// Tiles [t0, t1) of the flat tile index; the block buffer's tile 0 is t0.
using WinoInputFn = void (*)(const WinoInput& a, int64_t t0, int64_t t1);
using WinoOutputFn = void (*)(const WinoOutput& a, int64_t t0, int64_t t1);

namespace avx2 {
void f32_wino_input(const WinoInput& a, int64_t t0, int64_t t1);
void f32_wino_output(const WinoOutput& a, int64_t t0, int64_t t1);
}  // namespace avx2

namespace avx512 {
void f32_wino_input(const WinoInput& a, int64_t t0, int64_t t1);
void f32_wino_output(const WinoOutput& a, int64_t t0, int64_t t1);
}  // namespace avx512

}  // namespace slimrt::kernels::detail

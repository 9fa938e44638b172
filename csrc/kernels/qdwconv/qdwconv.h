// int8 depthwise 2-D convolution, NHWC, static (calibrated) u8 activations. Namespace slimrt::kernels.
//
// Formats (as in kernels/qgemm/qgemm.h):
//   x  u8 [N, H, W, C]            x ~ x_scale * (xq - x_zero); taps outside the image read x_zero (value 0)
//   w  int8 [C, KH, KW] (the QInt8 conv weight [O=C, KH, KW, 1]), w[c] ~ w_scale[c] * wq[c]
//   acc[p][c] = sum_taps (xq - x_zero) * wq      exact int32 (|acc| <= taps * 255 * 128)
//   y[p][c]   = act(fma(float(acc), mul[c], bias[c]) + res[p][c]),  mul[c] = x_scale * w_scale[c]
//   res: float residual[p*ldr + c], or (float(rq[p*ldr + c]) - res_zero) * res_scale, or 0
//   out: u8 clamp(rint(y * inv_out_scale) + out_zero, 0, 255) (NaN -> 0), or float y
// Activations: none / relu / relu6 / leaky_relu only (the op layer checks). Every ISA gives
// bit-identical results (same int32 sums, one fma, the same rounding).
//
// Kernels (one row function per ISA, threads over output rows (n, oh)):
//   scalar  plain loops (the reference)
//   avx2    8 channels per ymm: vpmovzxbd of 8 input bytes, vpmaddwd with the int32-widened weights
//           (the upper int16 of each lane is 0 in x, so each lane's sum is exactly x * w), vpaddd;
//           channels beyond the last multiple of 8 run the scalar loop
//   avx512  the same on 16 channels per zmm, masked tail
//   vnni    64 channels per block, vpdpbusd over four kernel rows per dword on input columns
//           interleaved once per output row (qdwconv_vnni.cpp); also for Isa::Amx. C = 16 / 32 at
//           stride 1: 64 / C neighbouring output pixels per 64-lane block (no idle lanes)
// For 3x3 kernels the nine weight vectors of a channel block stay in registers along a row.
#pragma once
#include <cstdint>
#include <memory>

#include "core/common.h"
#include "core/cpu.h"
#include "kernels/act.h"
#include "kernels/dwconv/dwconv.h"
#include "kernels/qgemm/qgemm.h"

namespace slimrt::kernels {

struct PackedQ8Dw {
  int64_t C = 0, Cp = 0;     // channels, rounded up to 16
  int kh = 0, kw = 0;
  Isa isa = Isa::Scalar;
  AlignedPtr<int32_t> w;     // [kh*kw][Cp] sign-extended int8 weights, zero padded
  AlignedPtr<int32_t> wsum;  // [Cp] sum over taps of w
  // VNNI only (else null): [ceil(C/64)][ceil(KH/4)][KW][4][64] int8, the weights of kernel rows
  // 4g..4g+3 of one column in the four bytes of a dword, channels in the kernel's lane order
  // (byte 4*(4L + i) + b of [blk][g][kw][q] = w[64*blk + 16L + 4q + i][4g + b][kw]; zero padded;
  // C = 16 or 32: lanes C..63 repeat the channels, lane l holding channel l % C).
  AlignedPtr<int8_t> w4;
};

// wq [C][KH][KW] int8. Throws InvalidArgument on bad sizes, Unsupported when isa cannot run here.
std::unique_ptr<PackedQ8Dw> pack_q8_dw(const int8_t* wq, int64_t C, int kh, int kw, Isa isa);

// The static int8 epilogue of qgemm.h (bias, act in {None, Relu, Relu6, LeakyRelu}, residual float or u8,
// out_scale > 0: u8 output with out_zero; 0: float output), plus the input's zero point and the per-channel
// multiplier x_scale * w_scale[c].
struct Q8DwEpilogue : Q8StaticEpilogue {
  int32_t x_zero = 0;
  const float* mul = nullptr;     // [C] x_scale * w_scale[c]
};

// s: the depthwise shape (mult must be 1, s.c == w.C; oh/ow filled by dwconv2d_output_size).
// y [N, OH, OW, C] uint8 or float (per ep.out_scale), rows C apart.
void q8_dwconv2d(const DwConv2dShape& s, const uint8_t* x, const PackedQ8Dw& w, const Q8DwEpilogue& ep, void* y,
                 int threads);
// Output rows [r0, r1) of the flattened (n, oh) index only, on the calling thread: row r lands at
// y + (r - r0) * OW * C bytes (a fused op's chunk buffer); u8 output, no residual.
void q8_dwconv2d_rows(const DwConv2dShape& s, const uint8_t* x, const PackedQ8Dw& w, const Q8DwEpilogue& ep, void* y,
                      int64_t r0, int64_t r1);

}  // namespace slimrt::kernels

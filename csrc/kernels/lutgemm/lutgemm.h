// GEMM with weights stored as table indices, decoded through the table inside
// the kernels (never expanded to a dense fp32 matrix):
//
//   codebook  W[n][k] = lut[g][idx[n][k]]            g = n (per_row) or 0
//   log2      W[n][k] = scale[n] * L2[code[n][k]]    L2[0] = 0, else sign * 2^-(mag-1)
//                       (formats.py: sign = code >> (bits-1), mag = code & (2^(bits-1)-1))
//   y[m][n] = act( (sum_k x[m][k] * W~[n][k]) * rs[n] * scale[n] + bias[n] + residual[m*ldr + n] )
//
// where W~ is the table value and rs the row scale (log2: scale[n]; codebook: 1). A
// log2 tensor IS a codebook: its 2^bits-entry table L2 is shared by every row and
// the row scale factors out of the dot product, so log2 runs the codebook kernel
// with one shared table plus a per-row output scale (1 vpermps per 16 weights,
// where building the float from the code by exponent arithmetic costs ~6 integer
// ops per 16 weights: extract, mask magnitude, shift into the exponent, subtract
// from scale's bits, xor the sign, zero code 0).
//
// Decode: for <= 4-bit indices the (replicated) 16-entry table sits in one zmm and
// vpermps turns 16 indices into 16 floats (AVX2: two 8-entry vpermps + a blend on
// index bit 3); 5..8-bit indices gather from a 256-entry table. Why fp32 decode
// rather than an int8 table feeding vpdpbusd: the codebook values are arbitrary
// f32 numbers; an int8 table would round them (and the activations) and the
// kernel would no longer compute the format's equation. Tables that ARE int8 (log2
// with <= 4 bits, int8-lut codebooks) have the int8-table kernel of lutq8.h, which
// the runtime picks for them on AVX-512 VNNI.
//
// Packed index layout (per ISA; lanes Lw = 16 for AVX-512 and scalar, 8 for AVX2):
//   storage width sb = 1, 2, 4 (bits 1, 2, 3-4) or 8 (bits 5-8)  [3 bits widen to 4,
//   5..7 bits widen to 8: a byte-aligned layout the vector decode can shift out];
//   per row, blocks of Lw dwords; dword l of block b holds S = 32/sb indices,
//   slot j (bits j*sb .. j*sb+sb-1) = index of k = b*(S*Lw) + j*Lw + l.
//   So one dword-vector load per block and a right shift by sb per chunk put the
//   indices of Lw consecutive k in the low bits of each lane (vpermps ignores the
//   higher bits). Rows are padded to a multiple of 32 and k to whole blocks with
//   index 0 (those products meet zero activations).
//
// Kernel (every batch size): 4 weight rows (AVX2: 2) x up to 4 activation rows per
// call, over the whole K: each decoded vector of weights feeds up to 4 FMAs and
// each activation vector 4 (2), so the decode happens once per weight per 4
// activation rows, in registers, and nothing is expanded to memory. (A decoded-tile
// variant -- decode a [256][32] panel, transpose it in registers, run the fp32
// sgemm microkernel on it -- measured slower at batch 4..64 on Zen 4 (K=N=1024, 1 thread):
// the 16x16 transposes are shuffle-port bound, ~0.4 cycle per weight.)
// The activations are copied once into zero-padded rows (workspace). Threads split
// the weight rows; results do not depend on the thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/common.h"
#include "core/cpu.h"
#include "kernels/act.h"
#include "kernels/gemm/conv2d.h"

namespace slimrt::kernels {

struct PackedLut {
  int64_t N = 0, K = 0;
  int bits = 0;              // index width of the source format (1..8)
  int sb = 0;                // storage width of one index in idx (1, 2, 4 or 8)
  int lanes = 16;            // dwords per block (16: scalar/AVX-512, 8: AVX2)
  bool per_row = false;      // one table per row (else one shared table)
  bool log2 = false;         // built by pack_log2 (row_scale set)
  Isa isa = Isa::Scalar;
  int64_t Npad = 0;          // rows in idx (N rounded up to 32)
  int64_t kblock = 0;        // k per block = lanes * 32 / sb
  int64_t nblocks = 0;       // blocks per row
  int64_t row_bytes = 0;     // nblocks * lanes * 4
  int table = 0;             // floats per table: 16 (sb <= 4, entries replicated) or 256
  AlignedPtr<uint8_t> idx;   // [Npad][row_bytes]
  AlignedPtr<float> lut;     // [per_row ? Npad : 1][table]
  AlignedPtr<float> row_scale;  // [N] (log2) or null
  size_t bytes() const;      // bytes of idx + tables + scales
};

// Codebook: packed = indices LSB-first at `bits` (formats.py pack_bits) of an [N][K]
// matrix; lut = [per_row ? N : 1][lut_size] floats, lut_size <= 2^bits. Indices
// >= lut_size are rejected (InvalidArgument).
std::unique_ptr<PackedLut> pack_codebook(const uint8_t* packed, int64_t N, int64_t K, int bits, const float* lut,
                                         int64_t lut_size, bool per_row, Isa isa);
// Log2: packed codes at `bits` (2..8) of [N][K]; scale = [N] (per row) or [1] (n_scale 1).
std::unique_ptr<PackedLut> pack_log2(const uint8_t* packed, int64_t N, int64_t K, int bits, const float* scale,
                                     int64_t n_scale, Isa isa);

size_t lut_dense_workspace(int64_t M, const PackedLut& W, int threads);
// y[M][N] (rows ldy apart) = epilogue(x[M][K] (rows ldx apart) x W^T). ws: lut_dense_workspace
// bytes, 64-byte aligned, or null. residual must not overlap y. threads <= 0: default.
void lut_dense(int64_t M, const float* x, int64_t ldx, const PackedLut& W, float* y, int64_t ldy,
               const Epilogue& ep, void* ws, int threads);

// NHWC convolution with W = [O][KH*KW*Cg] (OHWI rows): 1x1 stride-1 unpadded runs
// lut_dense on x directly, other shapes through im2col blocks of kLutConvRows pixels.
constexpr int64_t kLutConvRows = 192;
size_t lut_conv2d_workspace(const Conv2dShape& s, const PackedLut& W, int threads);
void lut_conv2d(const Conv2dShape& s, const float* x, const PackedLut& W, float* y, const Epilogue& ep,
                void* ws, int threads);

}  // namespace slimrt::kernels

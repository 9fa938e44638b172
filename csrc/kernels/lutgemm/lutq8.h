// Int8-table LUT GEMM ("lutq8"): <= 4-bit codebook / log2 indices decoded to int8
// weights in registers and fed to vpdpbusd with u8 activations quantized per row.
//
// Equations (the weight tables are int8, Wq[n][k] = T[g(n)][idx[n][k]]):
//   int8-lut codebook   T = the format's int8 table,                 rs[n] = 1
//   log2 (bits <= 4)    T[c] = 0 (c = 0) else sign * 64 * 2^-(mag-1), rs[n] = scale[n] / 64
//                       (mag <= 7, so T is in {0, +-1, +-2, ..., +-64, -128}: EXACT, no
//                       rounding of the weights at all; -128 is code 2^(bits-1), mag 0)
//   f32 codebook        T[c] = rint(lut[c] / s), s = max|lut row| / 127, rs[n] = s  (tuning
//                       variant only: |w - rs*Wq| <= max|lut row| / 254 per weight)
//   activations         a[m][k] ~= a_scale[m] * (Aq[m][k] - a_zero[m])  (quantize_rows_u8 of
//                       qgemm.h: dynamic per-row range, same rounding as q8_dense_dynamic)
//   accumulator         acc[m][n] = sum_k Aq[m][k]*Wq[n][k] - a_zero[m]*rowsum[n]   (exact int32)
//   float out           y[m][n] = act(float(acc) * a_scale[m] * rs[n] * ep.scale[n] + bias[n]
//                                     + residual[m][n])
// Overflow: |Wq| <= 128 and |Aq - a_zero| <= 255, so every partial sum is <= K*255*128: K <=
// kQ8MaxK (65536) is exact in int32, as for qgemm. pack_* rejects larger K.
//
// Packed layout (every ISA; "row group" = 4 consecutive output rows):
//   storage width sb = bits (1, 2) or 4 (bits 3, 4); a block is 64 bytes per row group and
//   covers kb = 128 / sb values of k: byte p (0..15) of 16-byte lane i (0..3) holds, in bits
//   j*sb .. j*sb+sb-1 (chunk j < 8/sb), the index of row 4g+i at k = b*kb + 16*j + p.
//   tables [groups][64] int8: lane i = the 16-entry table of row 4g+i (zero past 2^bits).
//   Rows are padded to whole groups and k to whole blocks with index 0; padded k meet
//   activation bytes 0 (not the zero point), and rowsum counts real k only, so padding adds 0.
// Why this layout (AVX-512 VNNI kernel, lutq8_vnni.cpp): one 64-byte load holds 4 rows x
//   128/sb k; per chunk an AND (+ a shift) leaves 64 4-bit indices and ONE vpshufb decodes
//   them through 4 different 16-byte tables at once (vpshufb looks up within each 128-bit
//   lane: the per-row tables cost nothing extra and need no VBMI vpermb, so the kernel runs
//   on any AVX-512BW+VNNI CPU). The 16 activation bytes of the chunk are broadcast to the 4
//   lanes (vbroadcasti32x4) and one vpdpbusd accumulates 4 rows x 16 k into 16 int32 (4 per
//   row); the 4 dwords per row are reduced once, at the end of K.
//
// Kernels: Isa::Avx512Vnni / Amx (vpdpbusd; decode by vpshufb, or by vpermb when every row shares
// one table and the CPU has AVX512_VBMI: lutq8_vbmi.cpp) and Isa::Scalar (reference loops over the same
// layout). Avx2 / Avx512 without VNNI are rejected (Unsupported): the fp32-table kernels of
// lutgemm.h serve those ISAs. Threads split the row groups; results do not depend on the
// thread count (integer accumulation is exact; the epilogue is per element).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/common.h"
#include "core/cpu.h"
#include "kernels/act.h"
#include "kernels/gemm/conv2d.h"

namespace slimrt::kernels {

struct PackedLutQ8 {
  int64_t N = 0, K = 0;
  int bits = 0;              // index width of the source format (1..4)
  int sb = 0;                // storage width: 1, 2 or 4
  bool per_row = false;      // tables differ per row (per-row codebook or quantized f32 rows)
  bool log2 = false;         // built by pack_lutq8_log2
  bool quantized = false;    // f32 codebook whose centroids were rounded to int8 (tuning variant)
  bool vbmi = false;         // one table for every row and the CPU has AVX512_VBMI: the vpermb kernel
                             // (set by pack_*; clearing it runs the vpshufb kernel, same integers)
  Isa isa = Isa::Scalar;
  int64_t groups = 0;        // ceil(N / 4)
  int64_t kb = 0;            // k per block = 128 / sb
  int64_t nblocks = 0;       // blocks per row group
  int64_t Kp = 0;            // nblocks * kb
  AlignedPtr<uint8_t> idx;   // [groups][nblocks][64]
  AlignedPtr<int8_t> table;  // [groups][4][16]
  AlignedPtr<float> row_scale;   // [groups*4]
  AlignedPtr<int32_t> rowsum;    // [groups*4] sum over real k of Wq[n][k]
  size_t bytes() const;
};

// True when `isa` has an int8-table kernel (Scalar reference, Avx512Vnni, Amx).
bool lutq8_has_kernel(Isa isa);

// Codebook with an int8 table: lut [per_row ? N : 1][lut_size] int8, bits 1..4.
std::unique_ptr<PackedLutQ8> pack_lutq8_codebook(const uint8_t* packed, int64_t N, int64_t K, int bits,
                                                 const int8_t* lut, int64_t lut_size, bool per_row, Isa isa);
// Codebook with a float table rounded to int8 per table (the tuning variant; see the error
// bound above). An all-zero table gets scale 1.
std::unique_ptr<PackedLutQ8> pack_lutq8_codebook_f32(const uint8_t* packed, int64_t N, int64_t K, int bits,
                                                     const float* lut, int64_t lut_size, bool per_row, Isa isa);
// Log2 codes at bits 2..4; scale [1] or [N].
std::unique_ptr<PackedLutQ8> pack_lutq8_log2(const uint8_t* packed, int64_t N, int64_t K, int bits,
                                             const float* scale, int64_t n_scale, Isa isa);

// Dense: y[M][N] (rows ldy apart) = the float equation above for x [M][K] (rows ldx apart).
// ws: lutq8_dense_workspace bytes, 64-byte aligned, or null. residual must not overlap y.
size_t lutq8_dense_workspace(int64_t M, const PackedLutQ8& W, int threads);
void lutq8_dense(int64_t M, const float* x, int64_t ldx, const PackedLutQ8& W, float* y, int64_t ldy,
                 const Epilogue& ep, void* ws, int threads);

// Raw corrected accumulators acc[m][n] = sum_k (Aq[m][k] - a_zero) * Wq[n][k] (Aq u8 [M][K]).
void lutq8_gemm_acc(int64_t M, const uint8_t* Aq, int64_t lda, int32_t a_zero, const PackedLutQ8& W,
                    int32_t* acc, int64_t ldacc, void* ws, int threads);

// NHWC convolution, W = [O][KH*KW*Cg]: 1x1 stride-1 unpadded runs lutq8_dense on x (one
// quantization per pixel row); other shapes gather float im2col blocks of kLutQ8ConvRows pixels
// (out-of-image taps 0, which quantize exactly to the zero point) and quantize each im2col row.
constexpr int64_t kLutQ8ConvRows = 192;
size_t lutq8_conv2d_workspace(const Conv2dShape& s, const PackedLutQ8& W, int threads);
void lutq8_conv2d(const Conv2dShape& s, const float* x, const PackedLutQ8& W, float* y, const Epilogue& ep,
                  void* ws, int threads);

}  // namespace slimrt::kernels

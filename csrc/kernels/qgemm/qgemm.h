// int8 GEMM and convolution: u8 activations x s8 weights, int32 accumulation.
//
// Formats (the QInt8 storage format, axis 0; FBGEMM-style equations):
//   weight      w[n][k]  = w_scale[n] * Wq[n][k]            Wq int8, symmetric (no zero point)
//   activation  a[m][k] ~= a_scale[m] * (Aq[m][k] - a_zero[m])  Aq uint8, a_zero in [0, 255]
//   accumulator acc[m][n] = sum_k (Aq[m][k] - a_zero[m]) * Wq[n][k]           (exact int32)
//                         = sum_k Aq*Wq  -  a_zero[m] * colsum[n]  (colsum precomputed at packing)
//   float out   C[m][n] = act( fma(float(acc), a_scale[m]*w_scale[n], bias[n]) + residual[m][n] )
//   u8 out      Cq[m][n] = clamp(rint(C[m][n] * (1/out_scale)) + out_zero, 0, 255)
//
// Rounding (identical on every ISA, so all ISAs give bit-identical results for the
// activations none/relu/relu6/leaky_relu; the others give exactly apply_act_inplace(isa) of the
// activation-free result: the AVX-512 / VNNI epilogue applies them in registers, with the same
// vmath.h functions, the other ISAs call apply_act_inplace per tile row):
//   rint = round to nearest, ties to even (the default MXCSR mode; std::nearbyint in scalar).
//   Quantizing x with (scale, zero):  q = clamp(rint(x * inv) + zero, 0, 255), inv = 1.f / scale
//   computed in float; NaN gives 0. float(acc) rounds to nearest for |acc| > 2^24.
//   Dynamic per-row parameters: lo = min(0, min_k x), hi = max(0, max_k x) (0 is always exactly
//   representable), scale = (hi - lo) / 255.f, zero = clamp(rint(-lo * (1.f / scale)), 0, 255);
//   a row of zeros (or non-finite range) gets scale = 1, zero = 0.
//
// Overflow: |acc| and every partial sum are <= K * 255 * 128, so K <= 65536 is exact in int32
// (65536 * 32640 = 2139095040 < 2^31). pack_q8_b rejects larger K (InvalidArgument); split the
// reduction into several GEMMs and add their float outputs to go beyond.
//
// Kernels (one per ISA, chosen by the Isa the weights were packed for):
//   scalar      reference loops, 4x4 tile, B layout [N/4][K][4]
//   avx2        vpmaddwd on int16-widened operands, 6x16 tile, B [N/16][K/2][16][2] (s8, sign-
//               extended with vpmovsxbw at load). Why not vpmaddubsw: it sums two u8*s8 products
//               into a SATURATING int16 (255*127*2 = 64770 > 32767), which silently corrupts
//               results for ordinary data. vpmaddwd multiplies int16 pairs into an exact int32.
//   avx512      the same vpmaddwd scheme on zmm, 8x48 tile, B [N/48][K/2][48][2]
//   avx512vnni  vpdpbusd (4 u8*s8 products summed straight into int32, no saturation),
//               B [N/nr][K/4][nr][4] with the panel width pack_q8_b picks per N: the one that pads N
//               least among 8x48, 6x64, 12x32, 16x16 tiles (ties: the wider; N = 64 -> 6x64, N = 24
//               -> 12x32, N = 1000 -> 8x48). Also used for Isa::Amx (no AMX tile kernel: it cannot
//               be tested on the development CPU).
// K is zero-padded to a multiple of 4 in every layout; padded columns of B are zero.
//
// Threads: work is split over (row block, column panel) tiles; the result does not depend on
// the thread count. Each thread runs its rows in blocks of about 128 KB of prepared A (L2
// resident), every panel of its share of B over one block before the next. Workspace: quantized/widened A rows (plus per-row scale and zero point).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/common.h"
#include "core/cpu.h"
#include "kernels/act.h"
#include "kernels/gemm/conv2d.h"

namespace slimrt::kernels {

constexpr int64_t kQ8MaxK = 65536;  // largest K whose int32 accumulation cannot overflow

// Int8 weights packed for one ISA's microkernel (never expanded to float).
struct PackedQ8B {
  int64_t N = 0, K = 0;
  int64_t Kp = 0;          // K rounded up to a multiple of 4
  Isa isa = Isa::Scalar;   // only this ISA's kernel runs it
  int nr = 0;              // panel width (columns)
  int kg = 0;              // K group interleaved per column (1 scalar, 2 vpmaddwd, 4 vpdpbusd)
  int64_t panels = 0;      // ceil(N / nr)
  AlignedPtr<int8_t> data;    // [panels][Kp/kg][nr][kg], zero padded
  AlignedPtr<int32_t> colsum; // [panels*nr] sum_k Wq[n][k] (0 for padded columns)
};

// Wq row-major [N][K] (rows K apart). Throws InvalidArgument for N, K < 1 or K > kQ8MaxK,
// Unsupported when the ISA cannot run here.
std::unique_ptr<PackedQ8B> pack_q8_b(const int8_t* Wq, int64_t N, int64_t K, Isa isa);

// Bytes of workspace q8_dense_dynamic / q8_dense_static* / q8_gemm_acc need (64-byte aligned).
size_t q8_dense_workspace(int64_t M, int64_t K, int threads);

// Dynamic quantization: quantizes each row of A (float [M][K], rows lda apart) into the
// workspace, int8 GEMM, then C[m][n] = act(acc * a_scale[m] * w_scale[n] + bias[n] + residual).
// ep.scale must be null (w_scale plays its part). ep.residual may be exactly C (same ld).
// workspace: q8_dense_workspace(M, B.K, threads) bytes, or null (allocated per call).
void q8_dense_dynamic(int64_t M, const float* A, int64_t lda, const PackedQ8B& B, const float* w_scale,
                      float* C, int64_t ldc, const Epilogue& ep, void* workspace, int threads);

// Static quantization (per-tensor a_scale / a_zero from calibration), u8 output requantized
// with (out_scale, out_zero) for the next int8 layer. bias may be null.
void q8_dense_static(int64_t M, const uint8_t* Aq, int64_t lda, float a_scale, int32_t a_zero,
                     const PackedQ8B& B, const float* w_scale, const float* bias, Act act, float alpha,
                     float out_scale, int32_t out_zero, uint8_t* Cq, int64_t ldc, void* workspace,
                     int threads);

// What a static int8 layer does after the int32 accumulation, per output element [m][n]:
//   y = act(fma(float(acc), x_scale * w_scale[n], bias[n]) + res[m][n])
//   res = residual[m*ldr + n] (float), or (residual_u8[m*ldr + n] - res_zero) * res_scale (u8,
//         dequantized in float; the same on every ISA), or 0
//   out_scale > 0: u8 output clamp(rint(y * (1 / out_scale)) + out_zero, 0, 255); out_scale == 0: float y.
// Every activation is supported (none/relu/relu6/leaky_relu inline, the others on a float tile).
struct Q8StaticEpilogue {
  const float* bias = nullptr;
  Act act = Act::None;
  float alpha = 0.f;
  const float* residual = nullptr;
  const uint8_t* residual_u8 = nullptr;
  float res_scale = 1.f;
  int32_t res_zero = 0;
  int64_t ldr = 0;
  float out_scale = 0.f;
  int32_t out_zero = 0;
  // Bytes the caller reads next, fetched towards L2 a slice per tile while the GEMM computes
  // (as Epilogue::prefetch), or null. Only a hint.
  const void* prefetch = nullptr;
  int64_t prefetch_bytes = 0;
};

// Static quantization, any output: Aq u8 [M][K] (rows lda apart) with one (a_scale, a_zero);
// C is uint8 (ep.out_scale > 0) or float, rows ldc apart. Workspace: q8_dense_workspace(M, K, threads)
// bytes or null; none is touched when Aq can be read in place (VNNI and K a multiple of 4).
void q8_dense_static_ex(int64_t M, const uint8_t* Aq, int64_t lda, float a_scale, int32_t a_zero,
                        const PackedQ8B& B, const float* w_scale, const Q8StaticEpilogue& ep, void* C, int64_t ldc,
                        void* workspace, int threads);

// Static quantization with float output (same epilogue as q8_dense_dynamic).
void q8_dense_static_f32(int64_t M, const uint8_t* Aq, int64_t lda, float a_scale, int32_t a_zero,
                         const PackedQ8B& B, const float* w_scale, float* C, int64_t ldc, const Epilogue& ep,
                         void* workspace, int threads);

// Raw zero-point-corrected accumulators acc[m][n] = sum_k (Aq[m][k] - a_zero) * Wq[n][k].
void q8_gemm_acc(int64_t M, const uint8_t* Aq, int64_t lda, int32_t a_zero, const PackedQ8B& B,
                 int32_t* acc, int64_t ldacc, void* workspace, int threads);

// Quantization helpers (rounding as documented above; isa picks the SIMD loop, results are
// identical on every ISA).
void quantize_u8(const float* x, int64_t n, float scale, int32_t zero, uint8_t* out, Isa isa);
void dequantize_u8(const uint8_t* q, int64_t n, float scale, int32_t zero, float* out);  // (q - zero) * scale
// Dynamic per-row parameters and quantization of A [M][K] (rows lda apart) into q [M][ldq].
void quantize_rows_u8(int64_t M, int64_t K, const float* A, int64_t lda, uint8_t* q, int64_t ldq,
                      float* scale, int32_t* zero, Isa isa, int threads);
// The dynamic (scale, zero) of a range [mn, mx] (see the rounding rules above).
void q8_dynamic_params(float mn, float mx, float* scale, int32_t* zero);

// ---- convolution --------------------------------------------------------------------------
// Weights [O][KH][KW][C/groups] int8 with per-output-channel scale; one PackedQ8B per group
// (N = O/groups, K = KH*KW*Cg).
struct PackedQ8Conv2d {
  int64_t O = 0, KH = 0, KW = 0, Cg = 0, groups = 1;
  Isa isa = Isa::Scalar;
  std::vector<std::unique_ptr<PackedQ8B>> group_b;
};

std::unique_ptr<PackedQ8Conv2d> pack_q8_conv2d(const int8_t* Wq, int64_t O, int64_t KH, int64_t KW, int64_t Cg,
                                              int64_t groups, Isa isa);

size_t q8_conv2d_workspace(const Conv2dShape& s, int threads);

// x float NHWC [N][H][W][C] -> y float NHWC [N][OH][OW][O] (dense). The input is quantized
// dynamically PER IMAGE (one (scale, zero) per batch item over all its pixels and channels;
// padding taps take the zero point, i.e. the value 0). 1x1 stride-1 unpadded convolutions run
// the GEMM on the quantized input directly; other shapes gather im2col row blocks of the
// quantized input into the workspace. Epilogue as q8_dense_dynamic (residual [M][ldr], M = N*OH*OW).
void q8_conv2d_dynamic(const Conv2dShape& s, const float* x, const PackedQ8Conv2d& w, const float* w_scale,
                       float* y, const Epilogue& ep, void* workspace, int threads);

// Static (calibrated) input: xq u8 NHWC [N][H][W][C] with one (x_scale, x_zero) for the whole
// tensor; padding taps read x_zero (the value 0). y [N][OH][OW][O]: u8 or float per ep (residual
// [M][ldr], M = N*OH*OW). 1x1 stride-1 unpadded convolutions read xq in place (VNNI, C % 4 == 0);
// on VNNI every other shape with C/groups % 4 == 0 runs an implicit im2col: per block of 96 output
// pixels a table of pointers to each tap's input pixel (padding taps point at a row of x_zero) is
// read by the indirect microkernel, nothing is copied. Other shapes / ISAs gather im2col row
// blocks into the workspace (C/groups <= 4, e.g. stems, with whole kernel rows copied at once).
size_t q8_conv2d_static_workspace(const Conv2dShape& s, const PackedQ8Conv2d& w, int threads);
void q8_conv2d_static(const Conv2dShape& s, const uint8_t* xq, float x_scale, int32_t x_zero,
                      const PackedQ8Conv2d& w, const float* w_scale, const Q8StaticEpilogue& ep, void* y,
                      void* workspace, int threads);

}  // namespace slimrt::kernels

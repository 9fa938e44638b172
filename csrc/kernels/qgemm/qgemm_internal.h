// Per-ISA pieces of the int8 GEMM (declarations only: included by the baseline driver
// and by the ISA-suffixed kernel files, so it holds no inline code).
//
// Microkernel family "q8 gemm MRxNR": computes rows x NR int32 accumulators (rows <= MR)
//   acc[r*NR + j] = sum_{g < kgroups} sum_{i < kg} a[r][g*kg + i] * b[g][j][i]
// with a the activation rows (u8 for kg 1 and 4, int16 0..255 for kg 2), lda elements apart,
// and b one packed panel [kgroups][NR][kg] (s8). No zero-point correction here.
// Epilogue family: turns a tile of accumulators into the output (see Q8Tile).
#pragma once
#include <cstdint>

#include "kernels/act.h"

namespace slimrt::kernels::detail {

using Q8Ukernel = void (*)(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b,
                           int32_t* acc);
// Indirect form (implicit im2col, u8 kg-4 layouts only): row r's K stream is taps segments of
// kgt groups of 4, segment t starting at ap[r * taps + t].
using Q8IUkernel = void (*)(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b,
                            int32_t* acc);

enum class Q8Out : int { Acc32 = 0, F32 = 1, U8 = 2 };

// One output tile: rows x nv accumulators at acc (row stride ldacc).
struct Q8Tile {
  const int32_t* acc = nullptr;
  int64_t ldacc = 0;
  int rows = 0, nv = 0;
  const int32_t* colsum = nullptr;  // at the tile's first column
  const int32_t* a_zero = nullptr;  // at the tile's first row; row r uses a_zero[r * a_step]
  const float* a_scale = nullptr;   // idem
  int64_t a_step = 0;               // 1 per-row parameters, 0 per-tensor
  const float* w_scale = nullptr;   // at the first column (F32/U8)
  const float* bias = nullptr;      // at the first column, or null
  const float* residual = nullptr;  // tile origin, or null (F32 only)
  int64_t ldr = 0;
  // u8 residual at the tile origin (rows ldr apart), added as (float(q) - res_zero) * res_scale
  // (a separate multiply, then an add: no fma). Only epilogues listed with u8_residual in the
  // driver's table read it (avx512, used by VNNI too); the others get a float tile in residual.
  const uint8_t* residual_u8 = nullptr;
  float res_scale = 1.f, res_zero = 0.f;
  Q8Out kind = Q8Out::Acc32;
  void* out = nullptr;              // tile origin: int32 / float / uint8
  int64_t ldo = 0;                  // elements
  Act act = Act::None;              // None, Relu, Relu6, LeakyRelu; every Act where the driver's
                                    // table row says any_act (avx512, VNNI)
  float alpha = 0.f;
  float inv_out_scale = 1.f;        // U8
  float out_zero = 0.f;             // U8
};
using Q8EpiFn = void (*)(const Q8Tile& t);

// A static-requantization tile fused into the VNNI microkernel (q8_static_vnni.cpp): u8 output,
// per-tensor activation parameters, act none/relu/relu6/leaky_relu, optional u8 residual.
// Column arrays hold the tile's panel (nr entries, 64-byte aligned, zero past nv).
struct Q8StaticU8 {
  const int32_t* negzc = nullptr;   // -a_zero * colsum[n]: the accumulators' start
  const float* scale = nullptr;     // a_scale * w_scale[n]
  const float* bias = nullptr;      // bias[n] or 0
  const uint8_t* residual_u8 = nullptr;  // tile origin, rows ldr apart, or null
  int64_t ldr = 0;
  float res_scale = 1.f, res_zero = 0.f;
  Act act = Act::None;
  float alpha = 0.f;
  float inv_out_scale = 1.f;
  float hi = 512.f;                 // min(512, 6 * inv_out_scale) for relu6, else 512
  int32_t out_zero = 0;
  uint8_t* out = nullptr;           // tile origin
  int64_t ldo = 0;
  int nv = 0;                       // valid columns of the tile
};
using Q8QuantFn = void (*)(const float* x, int64_t n, float inv_scale, float zero, void* out);  // u8 or i16
using Q8MinMaxFn = void (*)(const float* x, int64_t n, float* mn, float* mx);

namespace scalar {
void q8_gemm_4x4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc);
void q8_epilogue(const Q8Tile& t);
void q8_quantize_u8(const float* x, int64_t n, float inv_scale, float zero, void* out);
void q8_quantize_i16(const float* x, int64_t n, float inv_scale, float zero, void* out);
void q8_minmax(const float* x, int64_t n, float* mn, float* mx);
}  // namespace scalar

namespace avx2 {
void q8_gemm_6x16c2(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc);
void q8_epilogue(const Q8Tile& t);
void q8_quantize_u8(const float* x, int64_t n, float inv_scale, float zero, void* out);
void q8_quantize_i16(const float* x, int64_t n, float inv_scale, float zero, void* out);
void q8_minmax(const float* x, int64_t n, float* mn, float* mx);
}  // namespace avx2

namespace avx512 {
void q8_gemm_8x48c2(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc);
void q8_epilogue(const Q8Tile& t);
void q8_quantize_u8(const float* x, int64_t n, float inv_scale, float zero, void* out);
void q8_quantize_i16(const float* x, int64_t n, float inv_scale, float zero, void* out);
void q8_minmax(const float* x, int64_t n, float* mn, float* mx);
}  // namespace avx512

namespace vnni {
void q8_gemm_8x48c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc);
void q8_gemm_6x64c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc);
void q8_gemm_12x32c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc);
void q8_gemm_16x16c4(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc);
void q8_igemm_8x48c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc);
void q8_igemm_6x64c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc);
void q8_igemm_12x32c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc);
void q8_igemm_16x16c4(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc);
// The tile of panel width nr (64, 48, 32, 16) with its static epilogue fused (Q8StaticU8): A direct
// (a, lda; kgroups groups of 4) when ap is null, else indirect (kgroups groups per tap, taps taps).
void q8_static_u8_epilogue(int nr, int rows, const int32_t* acc, const Q8StaticU8& e);
}  // namespace vnni

}  // namespace slimrt::kernels::detail

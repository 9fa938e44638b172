// Interface between the int8-table LUT-GEMM driver (lutq8.cpp) and its per-ISA kernels
// (lutq8_<isa>.cpp). POD structs and declarations only: included by files compiled with
// different -m flags.
#pragma once
#include <cstdint>

namespace slimrt::kernels::detail {

// The packed layout of lutq8.h, from row group 0 of the matrix (or of a convolution group).
struct LutQ8View {
  const uint8_t* idx;   // [groups][nblocks][64]
  const int8_t* table;  // [groups][64]
  int64_t nblocks;
  int sb;               // 1, 2 or 4
};

// out[q*ldo + (n - 4*g0)] = sum_k xq[q*ldx + k] * Wq[n][k] (raw, no zero-point correction) for
// q < p (1..kLutQ8MaxP) and rows n of the row groups [g0, g1); xq rows hold nblocks * (128/sb)
// bytes (zero past K). bcast (p == 1, SIMD kernels only): xq is instead the row with each 16-byte
// chunk stored 4 times (64 bytes, 64-byte aligned: the vpdpbusd operand as loaded, so the GEMV
// needs no broadcast shuffle per chunk; lutq8_bcast_row builds it).
constexpr int kLutQ8MaxP = 4;
using LutQ8RowsFn = void (*)(const LutQ8View& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int p,
                             bool bcast, int32_t* out, int64_t ldo);

namespace vnni {  // vpshufb decode, per-row tables
void lutq8_rows(const LutQ8View& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int p, bool bcast,
                int32_t* out, int64_t ldo);
// xb[4 * c .. 4 * c + 63] = 4 copies of xq[c .. c + 15] for c = 0, 16, .. < Kp (xb 64-byte aligned).
void lutq8_bcast_row(const uint8_t* xq, int64_t Kp, uint8_t* xb);
}  // namespace vnni
namespace vbmi {  // vpermb decode: every row's table equal (AVX512_VBMI)
void lutq8_rows(const LutQ8View& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int p, bool bcast,
                int32_t* out, int64_t ldo);
}  // namespace vbmi

}  // namespace slimrt::kernels::detail

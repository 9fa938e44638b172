// Internal interface between the baseline GEMM driver (sgemm.cpp, conv2d.cpp)
// and the per-ISA fp32 microkernels (sgemm_<isa>.cpp, act_<isa>.cpp).
//
// Only POD structs and function declarations live here: this header is
// included by files compiled with different -m flags, so it must not define
// any inline function or template (the linker could keep an AVX-512 copy for
// baseline callers).
//
// Layouts shared by every kernel:
//   packed B  [panels][K][NR]   panel p holds columns p*NR .. p*NR+NR-1, one
//                               row of NR floats per k, columns >= N are 0;
//                               the buffer is 64-byte aligned.
//   packed A  [kc][MR]          one K-block of an MR-row tile: element (r, k)
//                               at a[k*MR + r]; rows >= the tile's rows unused.
#pragma once
#include <cstdint>

#include "kernels/act.h"

namespace slimrt::kernels::detail {

// What a microkernel does with its tile after the K loop.
//   first K block:  tile  = acc              (accumulate == false)
//   later K blocks: tile  = C + acc          (accumulate == true)
//   last K block:   C     = act(tile * scale + bias + residual)   (last == true)
//   otherwise:      C     = tile
// Pointers are already offset to the tile's first row/column.
struct UkEpilogue {
  const float* bias;      // [ncols] or null
  const float* scale;     // [ncols] or null
  const float* residual;  // row r at residual + r*ldr, or null
  int64_t ldr;
  Act act;
  float alpha;
  bool accumulate;
  bool last;
};

// C[r][j] for r < rows (1..MR), j < ncols (1..NR):  see UkEpilogue.
using UkernelFn = void (*)(int64_t rows, int64_t kc, const float* a, const float* b, float* c,
                           int64_t ldc, int64_t ncols, const UkEpilogue& ep);
// The same tile with A read in place: row r of the tile at a + r*lda (k = 0 .. kc-1), not packed.
// Identical results to UkernelFn on the packed copy of those rows.
using UkernelAFn = void (*)(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                            int64_t ldc, int64_t ncols, const UkEpilogue& ep);
// One row of A times `npanels` consecutive packed panels over the full K:
// c[j] for j < (npanels-1)*NR + last_ncols, epilogue as for a last K block
// (ep.accumulate may be true: c is then added to the sum).
using GemvFn = void (*)(int64_t K, const float* a, const float* b, int64_t npanels,
                        int64_t last_ncols, float* c, const UkEpilogue& ep);
using ActFn = void (*)(float* x, int64_t n, Act act, float alpha);
// dst[k*mr + r] = src[r][k] for r < rows (<= mr), k < len: one K segment of an A tile.
using PackRowsFn = void (*)(const float* const* src, int rows, int64_t len, float* dst, int mr);

struct SgemmKernels {
  int mr;        // rows per microtile
  int nr;        // columns per packed panel
  UkernelFn ukernel;
  UkernelAFn ukernel_a;
  GemvFn gemv;
  ActFn act;
  PackRowsFn pack_rows;
};

// True for activations that the microkernels apply in registers (none, relu,
// relu6, leaky_relu, hard_sigmoid, hard_swish); the others are applied by
// the ISA's act function on each stored row.
bool act_is_simple(Act act);

namespace avx2 {
constexpr int kMR = 6, kNR = 16;
void f32_gemm_ukernel(int64_t rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
             int64_t ncols, const UkEpilogue& ep);
void f32_gemm_ukernel_a(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                        int64_t ldc, int64_t ncols, const UkEpilogue& ep);
void f32_gemv_panels(int64_t K, const float* a, const float* b, int64_t npanels, int64_t last_ncols, float* c,
          const UkEpilogue& ep);
void f32_act_inplace(float* x, int64_t n, Act act, float alpha);
void f32_pack_rows(const float* const* src, int rows, int64_t len, float* dst, int mr);
}  // namespace avx2

namespace avx512 {
constexpr int kMR = 12, kNR = 32;
void f32_gemm_ukernel(int64_t rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
             int64_t ncols, const UkEpilogue& ep);
void f32_gemm_ukernel_a(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* b, float* c,
                        int64_t ldc, int64_t ncols, const UkEpilogue& ep);
void f32_gemv_panels(int64_t K, const float* a, const float* b, int64_t npanels, int64_t last_ncols, float* c,
          const UkEpilogue& ep);
void f32_act_inplace(float* x, int64_t n, Act act, float alpha);
void f32_pack_rows(const float* const* src, int rows, int64_t len, float* dst, int mr);
}  // namespace avx512

namespace scalar {
// The reference path uses panels of this width and plain loops.
constexpr int kNR = 16;
void f32_act_inplace(float* x, int64_t n, Act act, float alpha);
}  // namespace scalar

}  // namespace slimrt::kernels::detail

// fp32 2-D convolution on NHWC activations with OHWI weights, as a GEMM per group:
//   y[n][oh][ow][g*Og + o] = epilogue( sum_{kh,kw,c} x[n][oh*sh - pt + kh*dh][ow*sw - pl + kw*dw][g*Cg + c]
//                                                    * w[g*Og + o][kh][kw][c] )
// (out-of-image taps read 0). Output pixels are the GEMM rows M = N*OH*OW, the
// epilogue's residual is indexed residual[m*ldr + channel] (ldr = O for an NHWC tensor).
// Paths (chosen by pack_conv2d from the weight shape, see conv2d.cpp use_direct):
//   direct  few output channels per group or a short reduction: a direct NHWC
//           kernel vectorised over output channels (kernels/gemm/conv_direct.h),
//           no packing of the input, epilogue in registers;
//   GEMM    1x1 stride-1 unpadded convolutions are a plain GEMM on the NHWC input;
//           other shapes gather im2col rows block by block (row block x K block)
//           directly into the GEMM's packed-A buffers (no im2col matrix);
//   Winograd F(4x4, 3x3) (ConvPath::Winograd, 3x3 ungrouped weights; the convolution must
//           have stride 1 and dilation 1): 36 GEMMs on transformed 6x6 input patches and
//           transformed weights, 2.25 multiply-adds per output and channel pair instead of 9
//           (kernels/gemm/winograd.h); float results differ from the direct sum by rounding
//           of ~1e-6 sqrt(9 C) x the largest sum |x| |w| in the output's 4x4 tile.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/cpu.h"
#include "kernels/act.h"
#include "kernels/gemm/sgemm.h"

namespace slimrt::kernels {

struct Conv2dShape {
  int64_t N = 1, H = 1, W = 1, C = 1, O = 1, KH = 1, KW = 1;
  int64_t stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int64_t pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
  int64_t groups = 1;
  int64_t OH() const;  // floor((H + pad_t + pad_b - dil_h*(KH-1) - 1) / stride_h) + 1
  int64_t OW() const;
  bool plain_1x1() const;  // 1x1, stride 1, no padding: the convolution is a GEMM on x as it is
};

// Weights [O][KH][KW][C/groups], one PackedSgemmB per group (N = O/groups, K = KH*KW*Cg).
struct PackedConv2d {
  int64_t O = 0, KH = 0, KW = 0, Cg = 0, groups = 1;
  Isa isa = Isa::Scalar;
  std::vector<std::unique_ptr<PackedSgemmB>> group_b;  // GEMM path
  AlignedPtr<float> raw;  // scalar ISA only: the OHWI weights as given
  // Direct path (direct_nb > 0): per group [ceil(Og/nb)][KH][KW][Cg][nb], zero padded,
  // run by the kernel set of direct_isa (Avx2: nb 8, Avx512: nb 16).
  int direct_nb = 0;
  Isa direct_isa = Isa::Scalar;
  AlignedPtr<float> direct_w;
  int64_t direct_group_stride = 0;  // floats per group in direct_w
  // Winograd path (non-empty): for each of the 36 transform positions, the transformed weights
  // (G g G^T at that position) as a packed [O][C] GEMM B.
  std::vector<std::unique_ptr<PackedSgemmB>> wino_b;
};

// Auto: the path the weight shape suggests (direct_block in conv2d.cpp). Alternative: the other
// one (GEMM where Auto picks direct and vice versa), a candidate the planner times when tuning:
// the shape rule cannot see the spatial size (a 4x4 output at batch 1 runs 1.4-1.5x faster direct,
// a third of its im2col taps being padding the direct kernel skips). Null for the scalar ISA.
// Winograd: the F(4x4, 3x3) path, a third candidate for 3x3 ungrouped weights of convolutions with
// stride 1 and dilation 1 (the caller knows those; conv2d rejects other shapes with these weights).
// Null for the scalar ISA and other weight shapes.
enum class ConvPath { Auto, Alternative, Winograd };

std::unique_ptr<PackedConv2d> pack_conv2d(const float* W, int64_t O, int64_t KH, int64_t KW, int64_t Cg,
                                          int64_t groups, Isa isa, ConvPath path = ConvPath::Auto);

// The path the packed weights run: "direct", "gemm", "winograd" or "scalar" (for kernel names).
const char* conv2d_path(const PackedConv2d& w);

// Scratch conv2d needs with `threads` threads for these weights (packed im2col blocks, 192 KB per
// thread; Winograd: transformed tiles, <= ~1.2 MB per thread).
size_t conv2d_workspace_bytes(const Conv2dShape& s, const PackedConv2d& w, int threads);

// The same for weights packed for the Winograd path (needs no packed weights: a bound the planner
// can take before it packs them).
size_t conv2d_winograd_workspace_bytes(const Conv2dShape& s, Isa isa, int threads);

// True where the Winograd path can run this convolution (3x3, stride 1, dilation 1, one group, not
// the scalar ISA) and its shape rule expects it to beat the direct / GEMM path: >= 8 input
// channels, and enough 4x4 output tiles to reuse the transformed weights (4x the 3x3 weights'
// bytes), >= 2 while they fit in half the L3, else >= 8 (Zen 4, one thread: 1.8-2.6x at 2-49
// tiles of 64-512 channels; 512x512 at 4 tiles reads its 38 MB from DRAM and runs at 0.9x).
bool conv2d_winograd_pays(const Conv2dShape& s, Isa isa);

// x: [N][H][W][C], y: [N][OH][OW][O] (both dense). workspace: conv2d_workspace_bytes(s, w, threads)
// bytes, 64-byte aligned, or null (per-thread buffers are then used). Throws
// Error(InvalidArgument) when the shape does not match the packed weights or is invalid.
void conv2d(const Conv2dShape& s, const float* x, const PackedConv2d& w, float* y, const Epilogue& ep,
            void* workspace, int threads);

}  // namespace slimrt::kernels

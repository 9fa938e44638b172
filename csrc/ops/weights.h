// A constant weight matrix W [N][K] (dense rows N = output channels; a conv
// weight [O][KH][KW][Cg] is the same rows with K = KH*KW*Cg) packed for one ISA
// in the kernel family that executes its storage format directly:
//   dense f32/f16       -> fp32 GEMM (kernels/gemm)
//   csr (f32/int8 vals) -> CSR SpMM (kernels/spmm)
//   codebook (f32 lut)  -> LUT GEMM (kernels/lutgemm)
//   log2                -> LUT GEMM with a derived sign/exponent table
//   int8 (per channel)  -> int8 GEMM (kernels/qgemm), dynamic activation quantization
// Formats without a native kernel yet (csr whose values are codebook/log2
// codes) keep their sparsity: their values are decoded to f32 once, at load.
#pragma once
#include <memory>
#include <string>

#include "kernels/act.h"
#include "kernels/gemm/conv2d.h"
#include "runtime/op.h"

namespace slimrt::ops {

class WeightMatrix {
 public:
  virtual ~WeightMatrix() = default;
  virtual size_t dense_workspace(int64_t M, int threads) const { return 0; }
  virtual void dense(int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy, const Epilogue& ep, void* ws,
                     int threads) const = 0;
  virtual size_t conv_workspace(const kernels::Conv2dShape& s, int threads) const { return 0; }
  virtual void conv(const kernels::Conv2dShape& s, const float* x, float* y, const Epilogue& ep, void* ws,
                    int threads) const = 0;
  virtual std::string name() const = 0;
  // Kernel name of a convolution with these weights (the fp32 kernels pick direct or im2col + GEMM).
  virtual std::string conv_name(bool pointwise) const {
    return std::string(pointwise ? "conv1x1_" : "conv_im2col_") + name();
  }
};

// Packs input `input` of the node (a constant) as an [N][K] matrix; for conv weights pass the
// 4-D dims (O, KH, KW, Cg) and groups, else dims = {N, 1, 1, K}, groups = 1.
// fp32_only: decode the weight and use the fp32 kernels (the tuner's baseline).
std::unique_ptr<WeightMatrix> make_weight_matrix(BuildContext& c, size_t input, const std::array<int64_t, 4>& dims,
                                                 int64_t groups, bool conv, bool fp32_only = false);
// True when the stored weight is plain dense float (no other kernel to try).
bool weight_is_dense_f32(const BuildContext& c, size_t input);
// A dense fp32 convolution weight packed for the other fp32 path (direct vs im2col GEMM), a variant
// the planner times when tuning (kernels::ConvPath::Alternative); null where there is none.
std::unique_ptr<WeightMatrix> make_conv_alternative(BuildContext& c, size_t input, const std::array<int64_t, 4>& dims,
                                                    int64_t groups);
// A 3x3 ungrouped fp32 convolution weight [O][3][3][C] packed for the Winograd F(4x4, 3x3) path
// (kernels::ConvPath::Winograd), for a stride-1 undilated convolution; null where the ISA has none.
std::unique_ptr<WeightMatrix> make_conv_winograd(const float* w, const std::array<int64_t, 4>& dims, Isa isa);

}  // namespace slimrt::ops

// The im2col-block convolution driver shared by the compressed-weight kernels (CSR,
// fp32-table LUT, int8-table LUT), which all run a convolution as a row-blocked
// dense product of [pixels][KH*KW*C/groups] with their [O][KH*KW*C/groups] matrix.
// Baseline code: include it only from baseline (non-ISA-suffixed) driver files.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>

#include "core/common.h"
#include "kernels/act.h"
#include "kernels/gemm/conv2d.h"

namespace slimrt::kernels {

// Throws InvalidArgument ("<who>: ...") for a shape no convolution has, or weights that are
// not [N = O][K = KH*KW*C/groups].
void check_conv_shape(const Conv2dShape& s, int64_t N, int64_t K, const char* who);

// Gathers im2col rows [m0, m0+rows) (output pixels) of group g of an NHWC input into
// dst[rows][KH*KW*Cg] (out-of-image taps are 0).
void im2col_rows(const Conv2dShape& s, const float* x, int64_t g, int64_t m0, int64_t rows, float* dst);

// Bytes of the im2col block of `block_rows` pixels a non-1x1 convolution needs in front of
// the dense kernel's own workspace (0 for plain 1x1 convolutions), 64-byte rounded.
inline size_t conv_cols_bytes(const Conv2dShape& s, int64_t block_rows) {
  if (s.plain_1x1()) return 0;
  return align64(size_t(block_rows) * size_t(s.KH * s.KW * (s.C / s.groups)) * sizeof(float));
}

// For each group g and each block of up to `block_rows` output pixels, calls
//   dense(g, rows, a, lda, y, ldy, ep_block, dense_ws)
// with `a` the block's im2col rows (a plain 1x1 convolution passes x itself, all pixels at
// once), `y` the block's output columns of group g and the epilogue offset to the group and
// block. ws: conv_cols_bytes(s, block_rows) bytes followed by the dense kernel's workspace.
template <class Dense>
void conv_by_row_blocks(const Conv2dShape& s, const float* x, float* y, const Epilogue& ep, void* ws,
                        int64_t block_rows, Dense&& dense) {
  const int64_t M = s.N * s.OH() * s.OW(), G = s.groups, Cg = s.C / G, Og = s.O / G;
  const int64_t Kc = s.KH * s.KW * Cg;
  float* cols = static_cast<float*>(ws);
  void* rest = static_cast<char*>(ws) + conv_cols_bytes(s, block_rows);
  for (int64_t g = 0; g < G; ++g) {
    Epilogue e = ep;
    if (ep.bias) e.bias = ep.bias + g * Og;
    if (ep.scale) e.scale = ep.scale + g * Og;
    if (ep.residual) e.residual = ep.residual + g * Og, e.ldr = s.O;
    if (s.plain_1x1()) {
      dense(g, M, x + g * Cg, s.C, y + g * Og, s.O, e, rest);
      continue;
    }
    for (int64_t m0 = 0; m0 < M; m0 += block_rows) {
      const int64_t rows = std::min(block_rows, M - m0);
      im2col_rows(s, x, g, m0, rows, cols);
      Epilogue eb = e;
      if (e.residual) eb.residual = e.residual + m0 * s.O;
      dense(g, rows, cols, Kc, y + m0 * s.O + g * Og, s.O, eb, rest);
    }
  }
}

}  // namespace slimrt::kernels

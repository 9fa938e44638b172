// The shared im2col-block convolution helpers (conv_rows.h).
#include "kernels/gemm/conv_rows.h"

#include <cstring>

namespace slimrt::kernels {

void check_conv_shape(const Conv2dShape& s, int64_t N, int64_t K, const char* who) {
  if (s.N < 0 || s.H < 1 || s.W < 1 || s.C < 1 || s.O < 1 || s.KH < 1 || s.KW < 1)
    fail(Code::InvalidArgument, std::string(who) + ": sizes must be positive");
  if (s.stride_h < 1 || s.stride_w < 1 || s.dil_h < 1 || s.dil_w < 1)
    fail(Code::InvalidArgument, std::string(who) + ": strides and dilations must be >= 1");
  if (s.pad_t < 0 || s.pad_l < 0 || s.pad_b < 0 || s.pad_r < 0)
    fail(Code::InvalidArgument, std::string(who) + ": negative padding");
  if (s.groups < 1 || s.C % s.groups || s.O % s.groups)
    fail(Code::InvalidArgument, std::string(who) + ": groups must divide C and O");
  if (s.OH() < 1 || s.OW() < 1) fail(Code::InvalidArgument, std::string(who) + ": kernel larger than the padded input");
  if (N != s.O || K != s.KH * s.KW * (s.C / s.groups))
    fail(Code::InvalidArgument, std::string(who) + ": weights are not [O][KH*KW*C/groups]");
}

void im2col_rows(const Conv2dShape& s, const float* x, int64_t g, int64_t m0, int64_t rows, float* dst) {
  const int64_t OH = s.OH(), OW = s.OW(), Cg = s.C / s.groups, Kc = s.KH * s.KW * Cg;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t m = m0 + i;
    const int64_t ow = m % OW, t = m / OW, oh = t % OH, n = t / OH;
    float* d = dst + i * Kc;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.stride_h - s.pad_t + kh * s.dil_h;
      for (int64_t kw = 0; kw < s.KW; ++kw, d += Cg) {
        const int64_t iw = ow * s.stride_w - s.pad_l + kw * s.dil_w;
        if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) {
          std::memset(d, 0, sizeof(float) * Cg);
        } else {
          std::memcpy(d, x + ((n * s.H + ih) * s.W + iw) * s.C + g * Cg, sizeof(float) * Cg);
        }
      }
    }
  }
}

}  // namespace slimrt::kernels

// fp32 depthwise 2-D convolution, NHWC. Namespace slimrt::kernels.
//
// Layout:
//   x [N, H, W, C]                  C-contiguous input
//   w [KH, KW, O]                   O = C * mult; output channel o reads input
//                                   channel o / mult (PyTorch groups=C order).
//                                   A PyTorch weight [O, 1, KH, KW] becomes
//                                   w = weight.permute(2, 3, 0, 1) (w[kh][kw][o]).
//                                   Used as is: this layout is already the
//                                   packed one (one vector of O per tap).
//   y [N, OH, OW, O]
//   OH = (H + pt + pb - dh*(KH-1) - 1) / sh + 1, OW likewise; taps outside the
//   image read 0.
//   y[p][o] = act(acc[p][o] * scale[o] + bias[o] + residual[p*ldr + o])
//   with the Epilogue of kernels/act.h (each term optional; p = flat output pixel).
//
// Kernel: vectorised over output channels (one vector, masked tail), several
// output pixels of a row per register block sharing their input loads (3x3:
// see dwconv_impl.h), single pixels with clipped taps at the borders of other
// shapes; KW = 3 is a compile-time special case. The epilogue's per-channel
// vectors (scale, bias, clamp) are loaded once per block, not per pixel. The activation runs over the
// finished output row while it is in L1. mult > 1 first expands x to O
// channels in a scratch buffer (x[.., c] repeated mult times).
// Big tensors (a big batch): on the 3x3 path an input of >= 2 MB has the rows
// the next output row adds prefetched while the current row computes, and an
// output of >= 8 MB (C a multiple of the vector width, y vector-aligned, a
// piecewise-linear activation) is written with streaming stores. Measured on
// Zen 4, one thread, batch 16: 112x112x96 stride 2 2.5x, 56x56x144 3x faster.
#pragma once
#include <cstdint>

#include "core/cpu.h"
#include "kernels/act.h"

namespace slimrt::kernels {

struct DwConv2dShape {
  int64_t n = 1, h = 1, w = 1, c = 1;  // input
  int64_t mult = 1;                    // channel multiplier, O = c * mult
  int kh = 1, kw = 1;
  int sh = 1, sw = 1, dh = 1, dw = 1;
  int pt = 0, pl = 0, pb = 0, pr = 0;
  int64_t oh = 0, ow = 0;              // filled by dwconv2d_output_size
  int64_t out_channels() const { return c * mult; }
};

// Validates and fills s.oh / s.ow; throws InvalidArgument on bad params.
void dwconv2d_output_size(DwConv2dShape& s);

constexpr unsigned kDwStream = 1, kDwPrefetch = 2, kDwDramInput = 4;

struct DwConvKernels {
  const char* isa;
  // Output rows [r0, r1) of the flattened (n, oh) index; s.mult must be 1
  // (x has O channels). flags (tensors far bigger than the caches, a big batch):
  // kDwStream writes y with streaming stores where the layout allows,
  // kDwPrefetch fetches the input rows of the next output row ahead of use,
  // kDwDramInput (an input far bigger than the caches) keeps to kernels whose
  // reads stream through it in address order.
  void (*rows)(const float* x, const float* w, const Epilogue& ep, float* y, const DwConv2dShape& s,
               int64_t r0, int64_t r1, unsigned flags);
};

const DwConvKernels& dwconv_kernels(Isa isa);  // throws Unsupported if the CPU lacks `isa`
const DwConvKernels& dwconv_kernels_scalar();
const DwConvKernels& dwconv_kernels_avx2();
const DwConvKernels& dwconv_kernels_avx512();

// The flags dwconv2d passes its row kernel for shape s (s.mult == 1; s.oh / s.ow set):
// kDwPrefetch for an input bigger than L2, kDwDramInput for one far bigger than the caches,
// kDwStream for such an output unless the caller keeps the output cached (writes it in small
// pieces it reuses).
unsigned dwconv2d_flags(const DwConv2dShape& s, bool output_cached = false);

// s.oh / s.ow must be set. Threads over output rows.
void dwconv2d(const DwConv2dShape& s, const float* x, const float* w, const Epilogue& ep, float* y, Isa isa,
              int threads = 1);

}  // namespace slimrt::kernels

// fp32 NHWC pooling: max / average 2-D pooling and global pooling.
// Namespace slimrt::kernels.
//
// Layout: x [N, H, W, C] C-contiguous, y [N, OH, OW, C]; global pools give
// y [N, C]. The kernels vectorise over C (masked tail), one output pixel at
// a time; the driver threads over output rows (n, oh).
//
// Semantics follow PyTorch (max_pool2d / avg_pool2d), extended to asymmetric
// pads (t, l, b, r):
//   OH = floor_or_ceil((H + pt + pb - KH) / SH) + 1; with ceil_mode the last
//   window must start inside the input or the top/left padding:
//   if ((OH - 1) * SH >= H + pt) --OH.  (Same for W with pl, pr.)
//   max: max over the window's in-image taps (padding never wins); a window
//        with no in-image tap gives -inf.
//   avg: sum of in-image taps / divisor, where
//        count_include_pad: divisor = (min(hs + KH, H + pb) - hs) * (same for w),
//           hs = oh*SH - pt: padded positions count only up to the padded
//           extent, not beyond it (torch's ceil_mode rule);
//        otherwise: divisor = number of in-image taps (0 taps -> 0 output).
#pragma once
#include <cstdint>

#include "core/cpu.h"

namespace slimrt::kernels {

enum class PoolKind : int32_t { Max = 0, Avg = 1 };

struct Pool2dShape {
  int64_t n = 1, h = 1, w = 1, c = 1;    // input
  int kh = 1, kw = 1, sh = 1, sw = 1;
  int pt = 0, pl = 0, pb = 0, pr = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;         // avg only
  int64_t oh = 0, ow = 0;                // filled by pool2d_output_size
};

// Output extent of one spatial dim (PyTorch rule above); may be <= 0 for bad params.
int64_t pool_out_dim(int64_t in, int k, int s, int pad_begin, int pad_end, bool ceil_mode);
// Validates the shape, fills s.oh / s.ow; throws InvalidArgument on bad params.
void pool2d_output_size(Pool2dShape& s);

struct PoolKernels {
  const char* isa;
  // Output rows [r0, r1) of the flattened (n, oh) index.
  void (*max2d)(const float* x, float* y, const Pool2dShape& s, int64_t r0, int64_t r1);
  void (*avg2d)(const float* x, float* y, const Pool2dShape& s, int64_t r0, int64_t r1);
  // x [hw, c] -> y [c] for channels [c0, c1) of one image (ldx = c of the tensor).
  void (*global_max)(const float* x, float* y, int64_t hw, int64_t ldx, int64_t c0, int64_t c1);
  void (*global_avg)(const float* x, float* y, int64_t hw, int64_t ldx, int64_t c0, int64_t c1);
};

const PoolKernels& pool_kernels(Isa isa);  // throws Unsupported if the CPU lacks `isa`
const PoolKernels& pool_kernels_scalar();
const PoolKernels& pool_kernels_avx2();
const PoolKernels& pool_kernels_avx512();

// s.oh / s.ow must be set (pool2d_output_size). y [n, oh, ow, c].
void pool2d(PoolKind kind, const float* x, float* y, const Pool2dShape& s, Isa isa, int threads = 1);
// x [n, hw, c] -> y [n, c].
void global_pool(PoolKind kind, const float* x, float* y, int64_t n, int64_t hw, int64_t c, Isa isa,
                 int threads = 1);

}  // namespace slimrt::kernels

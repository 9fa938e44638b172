// ISA dispatch, shape rule and threaded driver for depthwise NHWC convolution (dwconv.h).
#include "kernels/dwconv/dwconv.h"

#include <algorithm>
#include <string>

#include "core/common.h"
#include "core/threadpool.h"

namespace slimrt::kernels {

namespace {
// Inputs bigger than L2 are prefetched; outputs of kStreamOutputBytes (act.h) or more are
// streamed, and inputs that big come from DRAM.
constexpr int64_t kPrefetchBytes = int64_t{2} << 20;
}  // namespace

const DwConvKernels& dwconv_kernels(Isa isa) {
  if (!isa_supported(isa))
    throw Error(Code::Unsupported, std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU");
  switch (isa) {
    case Isa::Scalar: return dwconv_kernels_scalar();
    case Isa::Avx2: return dwconv_kernels_avx2();
    default: return dwconv_kernels_avx512();
  }
}

void dwconv2d_output_size(DwConv2dShape& s) {
  if (s.n < 0 || s.h <= 0 || s.w <= 0 || s.c <= 0 || s.mult <= 0)
    throw Error(Code::InvalidArgument, "dwconv2d: empty input or bad multiplier");
  if (s.kh <= 0 || s.kw <= 0 || s.sh <= 0 || s.sw <= 0 || s.dh <= 0 || s.dw <= 0)
    throw Error(Code::InvalidArgument, "dwconv2d: kernel, strides and dilations must be positive");
  if (s.pt < 0 || s.pl < 0 || s.pb < 0 || s.pr < 0) throw Error(Code::InvalidArgument, "dwconv2d: pads must be >= 0");
  const int64_t eh = s.h + s.pt + s.pb - static_cast<int64_t>(s.dh) * (s.kh - 1) - 1;
  const int64_t ew = s.w + s.pl + s.pr - static_cast<int64_t>(s.dw) * (s.kw - 1) - 1;
  if (eh < 0 || ew < 0) throw Error(Code::InvalidArgument, "dwconv2d: kernel larger than the padded input");
  s.oh = eh / s.sh + 1;
  s.ow = ew / s.sw + 1;
}

unsigned dwconv2d_flags(const DwConv2dShape& s, bool output_cached) {
  const int64_t O = s.out_channels();
  unsigned flags = 0;
  if (!output_cached && s.n * s.oh * s.ow * O * static_cast<int64_t>(sizeof(float)) >= kStreamOutputBytes) flags |= kDwStream;
  const int64_t in_bytes = s.n * s.h * s.w * O * static_cast<int64_t>(sizeof(float));
  if (in_bytes >= kPrefetchBytes) flags |= kDwPrefetch;
  if (in_bytes >= kStreamOutputBytes) flags |= kDwDramInput;
  return flags;
}

void dwconv2d(const DwConv2dShape& s, const float* x, const float* w, const Epilogue& ep, float* y, Isa isa,
              int threads) {
  const DwConvKernels& k = dwconv_kernels(isa);
  const int64_t O = s.out_channels();
  const int64_t rows = s.n * s.oh;
  if (rows == 0) return;
  AlignedPtr<float> expanded;
  DwConv2dShape e = s;
  if (s.mult > 1) {
    // x[.., c] -> xe[.., c*mult + j]: the kernel then sees a plain depthwise conv with O channels.
    const int64_t pixels = s.n * s.h * s.w, C = s.c, m = s.mult;
    expanded = aligned_array<float>(static_cast<size_t>(pixels * O));
    float* xe = expanded.get();
    parallel_for(pixels, threads, std::max<int64_t>(1, 8192 / O), [&](int64_t b, int64_t en) {
      for (int64_t p = b; p < en; ++p)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t j = 0; j < m; ++j) xe[p * O + c * m + j] = x[p * C + c];
    });
    x = xe;
    e.c = O;
    e.mult = 1;
  }
  const int64_t work = std::max<int64_t>(1, s.ow * O * s.kh * s.kw);
  const int64_t grain = std::max<int64_t>(1, (1 << 17) / work);
  // An output much bigger than the caches goes to DRAM whatever we do (a big batch):
  // streaming stores then save the read-for-ownership of every output line. An input that
  // misses L2 has its rows prefetched a row ahead (measured on Zen 4: 28x28x192 at batch 16
  // 3x faster with both, 112x112x96 stride 2 2.5x).
  const unsigned flags = dwconv2d_flags(e);
  parallel_for(rows, threads, grain, [&](int64_t b, int64_t en) { k.rows(x, w, ep, y, e, b, en, flags); });
}

}  // namespace slimrt::kernels

// ISA dispatch, output-size rule and threaded drivers for NHWC pooling (pool.h).
#include "kernels/pool/pool.h"

#include <algorithm>
#include <string>

#include "core/common.h"
#include "core/threadpool.h"

namespace slimrt::kernels {

const PoolKernels& pool_kernels(Isa isa) {
  if (!isa_supported(isa))
    throw Error(Code::Unsupported, std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU");
  switch (isa) {
    case Isa::Scalar: return pool_kernels_scalar();
    case Isa::Avx2: return pool_kernels_avx2();
    default: return pool_kernels_avx512();
  }
}

int64_t pool_out_dim(int64_t in, int k, int s, int pad_begin, int pad_end, bool ceil_mode) {
  const int64_t span = in + pad_begin + pad_end - k;
  if (span < 0 || s <= 0) return 0;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + pad_begin) --out;
  return out;
}

void pool2d_output_size(Pool2dShape& s) {
  if (s.n < 0 || s.h <= 0 || s.w <= 0 || s.c <= 0) throw Error(Code::InvalidArgument, "pool2d: empty input");
  if (s.kh <= 0 || s.kw <= 0 || s.sh <= 0 || s.sw <= 0) throw Error(Code::InvalidArgument, "pool2d: kernel and strides must be positive");
  if (s.pt < 0 || s.pl < 0 || s.pb < 0 || s.pr < 0) throw Error(Code::InvalidArgument, "pool2d: pads must be >= 0");
  if (s.pt >= s.kh || s.pb >= s.kh || s.pl >= s.kw || s.pr >= s.kw)
    throw Error(Code::InvalidArgument, "pool2d: pads must be smaller than the kernel");
  s.oh = pool_out_dim(s.h, s.kh, s.sh, s.pt, s.pb, s.ceil_mode);
  s.ow = pool_out_dim(s.w, s.kw, s.sw, s.pl, s.pr, s.ceil_mode);
  if (s.oh <= 0 || s.ow <= 0) throw Error(Code::InvalidArgument, "pool2d: kernel larger than the padded input");
}

void pool2d(PoolKind kind, const float* x, float* y, const Pool2dShape& s, Isa isa, int threads) {
  const PoolKernels& k = pool_kernels(isa);
  const int64_t rows = s.n * s.oh;
  const int64_t work = std::max<int64_t>(1, s.ow * s.c * s.kh * s.kw);
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / work);
  auto fn = kind == PoolKind::Max ? k.max2d : k.avg2d;
  parallel_for(rows, threads, grain, [&](int64_t b, int64_t e) { fn(x, y, s, b, e); });
}

void global_pool(PoolKind kind, const float* x, float* y, int64_t n, int64_t hw, int64_t c, Isa isa, int threads) {
  const PoolKernels& k = pool_kernels(isa);
  auto fn = kind == PoolKind::Max ? k.global_max : k.global_avg;
  constexpr int64_t CB = 64;  // channels per task
  const int64_t nb = (c + CB - 1) / CB;
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, hw * CB));
  parallel_for(n * nb, threads, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t i = t / nb, c0 = (t % nb) * CB, c1 = std::min(c, c0 + CB);
      fn(x + i * hw * c, y + i * c, hw, c, c0, c1);
    }
  });
}

}  // namespace slimrt::kernels

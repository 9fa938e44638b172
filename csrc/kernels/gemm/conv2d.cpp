// conv2d (see conv2d.h): a direct kernel for few output channels / short K,
// otherwise one GEMM per group over the output pixels through the blocked GEMM
// driver with an im2col packer; the scalar ISA is a direct 7-loop convolution
// (the reference path). Winograd F(4x4, 3x3) for 3x3 stride-1 convolutions packed for it.
#include "kernels/gemm/conv2d.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "core/common.h"
#include "core/threadpool.h"
#include "kernels/gemm/conv_direct.h"
#include "kernels/gemm/gemm_driver.h"
#include "kernels/gemm/sgemm_internal.h"
#include "kernels/gemm/winograd.h"

namespace slimrt::kernels {
namespace {

// Inputs at least this big (more than L2) come from L3 or DRAM: the direct kernel then
// prefetches its input a row ahead.
constexpr int64_t kBigTensorBytes = int64_t{2} << 20;

// The direct kernel's channel block: <= 8 channels take 8-lane vectors (they waste nothing and run at
// the same lane rate on Zen 4).
int direct_width(Isa isa, int64_t Og) { return isa >= Isa::Avx512 && Og > 8 ? 16 : 8; }

// Direct kernel or GEMM, from the weight shape alone (so a packed weight serves every input shape).
// Measured on Zen 4 (one thread, batch 1): the direct kernel is 1.1-2.8x the GEMM
// for <= 32 output channels per group (GEMM panels are 32 / 16 channels wide and the im2col packing
// costs a pointer per row and tap) and 1.0-1.5x for KxK kernels with a reduction of <= 1152
// (3x3x128) and <= 128 output channels; with longer reductions the GEMM's K blocking keeps its
// weights in L1 and wins (3x3x512: 0.76x direct) -- except on tiny outputs (4x4 at batch 1: direct
// 1.4-1.5x, a third of the im2col taps being padding), which only tuning sees (ConvPath::Alternative).
// Returns the direct kernel's channel block (8 or 16), or 0 for the GEMM.
int direct_block(Isa isa, int64_t Og, int64_t KH, int64_t KW, int64_t Cg) {
  if (isa == Isa::Scalar) return 0;
  const bool few_out = Og <= 32;
  const bool short_k = KH * KW > 1 && KH * KW * Cg <= 1152 && Og <= 128;
  if (!few_out && !short_k) return 0;
  return direct_width(isa, Og);
}

void pack_direct(PackedConv2d& p, const float* W, int nb) {
  const int64_t Og = p.O / p.groups, K = p.KH * p.KW * p.Cg, nblk = (Og + nb - 1) / nb;
  p.direct_nb = nb;
  p.direct_isa = nb == 16 ? Isa::Avx512 : Isa::Avx2;
  p.direct_group_stride = nblk * K * nb;
  p.direct_w = aligned_array<float>(static_cast<size_t>(p.groups * p.direct_group_stride));
  float* d = p.direct_w.get();
  std::memset(d, 0, sizeof(float) * p.groups * p.direct_group_stride);
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t o = 0; o < Og; ++o) {
      const float* src = W + (g * Og + o) * K;  // [kh][kw][c]
      float* dst = d + g * p.direct_group_stride + (o / nb) * K * nb + (o % nb);
      for (int64_t k = 0; k < K; ++k) dst[k * nb] = src[k];
    }
}

void conv2d_direct(const Conv2dShape& s, const float* x, const PackedConv2d& w, float* y, const Epilogue& ep,
                   bool residual_is_c, int threads) {
  const int64_t OH = s.OH(), OW = s.OW(), G = s.groups, Cg = s.C / G, Og = s.O / G;
  const detail::DirectConvFn fn =
      w.direct_isa == Isa::Avx512 ? detail::avx512::f32_conv_direct_rows : detail::avx2::f32_conv_direct_rows;
  std::vector<detail::DirectConv> args(G);
  for (int64_t g = 0; g < G; ++g) {
    detail::DirectConv& a = args[g];
    a.x = x + g * Cg;
    a.w = w.direct_w.get() + g * w.direct_group_stride;
    a.y = y + g * Og;
    a.H = s.H; a.W = s.W; a.C = Cg; a.ldx = s.C;
    a.OH = OH; a.OW = OW; a.O = Og; a.ldy = s.O;
    a.KH = s.KH; a.KW = s.KW; a.sh = s.stride_h; a.sw = s.stride_w; a.dh = s.dil_h; a.dw = s.dil_w;
    a.pt = s.pad_t; a.pl = s.pad_l;
    a.scale = ep.scale ? ep.scale + g * Og : nullptr;
    a.bias = ep.bias ? ep.bias + g * Og : nullptr;
    a.residual = ep.residual ? ep.residual + g * Og : nullptr;
    a.ldr = ep.ldr;
    a.act = ep.act;
    a.alpha = ep.alpha;
    // Pixels of >= 64 channels are read as several interleaved line streams, which the
    // hardware prefetchers miss; short pixels read as one stream do well without help.
    a.prefetch = s.N * s.H * s.W * s.C * static_cast<int64_t>(sizeof(float)) >= kBigTensorBytes && Cg >= 64;
    a.spill = G == 1 && Og % w.direct_nb != 0 && Og <= 2 * w.direct_nb && !residual_is_c;
  }
  const int64_t rows = s.N * OH;
  const int64_t row_flops = std::max<int64_t>(1, 2 * OW * s.O * s.KH * s.KW * Cg);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 17) / row_flops);
  parallel_for(rows, threads, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t g = 0; g < G; ++g) fn(args[g], r0, r1);
  });
}

// im2col view of one group: row m = output pixel, column k = (kh, kw, c).
struct Im2colA {
  const Conv2dShape* s;
  const float* x;  // already offset to the group's first channel
  int64_t OH, OW, Cg;
  detail::PackRowsFn pack_rows;
};

// Every row of a tile shares the k -> (kh, kw, c) split, so a K block is a list of
// channel runs; for each run the tile's rows point into x (or at zeros for padding taps).
void pack_a_im2col(const void* ctx, int64_t m0, int64_t rows, int64_t k0, int64_t kc, int mr, float* dst) {
  const Im2colA& A = *static_cast<const Im2colA*>(ctx);
  const Conv2dShape& s = *A.s;
  const int64_t Cg = A.Cg, kwc = s.KW * Cg;
  const float* zeros = detail::zeros_for_packing(kc);
  int64_t n_[detail::kMaxMR], ih0[detail::kMaxMR], iw0[detail::kMaxMR];
  const float* src[detail::kMaxMR];
  for (int64_t t = 0; t * mr < rows; ++t) {
    const int r_n = static_cast<int>(std::min<int64_t>(mr, rows - t * mr));
    for (int r = 0; r < r_n; ++r) {
      const int64_t m = m0 + t * mr + r;
      const int64_t ow = m % A.OW, q = m / A.OW, oh = q % A.OH;
      n_[r] = q / A.OH;
      ih0[r] = oh * s.stride_h - s.pad_t;
      iw0[r] = ow * s.stride_w - s.pad_l;
    }
    float* d = dst + t * kc * mr;
    int64_t k = k0;
    const int64_t k_end = k0 + kc;
    int64_t kh = k / kwc, kw = (k % kwc) / Cg, c = k % Cg;
    while (k < k_end) {
      const int64_t len = std::min(Cg - c, k_end - k);
      for (int r = 0; r < r_n; ++r) {
        const int64_t ih = ih0[r] + kh * s.dil_h, iw = iw0[r] + kw * s.dil_w;
        src[r] = (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W)
                     ? A.x + ((n_[r] * s.H + ih) * s.W + iw) * s.C + c
                     : zeros;
      }
      A.pack_rows(src, r_n, len, d + (k - k0) * mr, mr);
      k += len;
      c = 0;
      if (++kw == s.KW) { kw = 0; ++kh; }
    }
  }
}

// ---- Winograd F(4x4, 3x3) ----------------------------------------------------------------------

// G (6x3) of F(4x4, 3x3): the weight transform U = G g G^T.
constexpr double kWinoG[6][3] = {{1.0 / 4, 0, 0},          {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                 {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

// Transformed tile buffers of a thread: a block of T tiles, its 36 positions' inputs [T][ldv] and
// GEMM results [T][ldm] (rows padded to 16 floats: the transforms move whole vectors).
constexpr int64_t kWinoBlockBytes = int64_t{1} << 20;
// Transformed weights up to this size stay in the L3 across calls (half of the development CPU's).
constexpr int64_t kWinoWeightsCachedBytes = int64_t{16} << 20;

struct WinoPlan {
  int64_t TH, TW, P;    // tiles per column / row, tiles in all
  int64_t T;            // tiles per block
  int64_t nblocks;      // ceil(P / T)
  int64_t chunks;       // output-channel chunks per block (tasks = nblocks x chunks)
  int64_t chunk_panels; // GEMM panels per chunk
  int64_t ldv, ldm;     // floats per tile row of the input / result planes
  int64_t slot_floats;  // per thread: 36 T (ldv + ldm)
  int64_t workers() const { return nblocks * chunks; }
};

// The shapes the Winograd path computes: 3x3, stride 1, dilation 1, one group.
bool wino_shape(const Conv2dShape& s) {
  return s.KH == 3 && s.KW == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 && s.dil_w == 1 && s.groups == 1;
}

// Blocks of tiles, as many whole microtiles of rows as fit the block budget. With several threads
// and few tiles (< a microtile each) the threads split the output channels of a block instead:
// each transforms the block's inputs (a small duplicated cost) and runs the GEMMs of its panels, so
// the transformed weights are read once per block rather than once per thread.
WinoPlan wino_plan(const Conv2dShape& s, Isa isa, int threads) {
  WinoPlan p{};
  threads = std::max(1, threads);
  p.TH = (s.OH() + detail::kWinoOut - 1) / detail::kWinoOut;
  p.TW = (s.OW() + detail::kWinoOut - 1) / detail::kWinoOut;
  p.P = s.N * p.TH * p.TW;
  p.ldv = (s.C + 15) / 16 * 16;
  p.ldm = (s.O + 15) / 16 * 16;
  const int64_t tile_bytes = detail::kWinoPoints * (p.ldv + p.ldm) * static_cast<int64_t>(sizeof(float));
  const detail::SgemmKernels* kr = detail::sgemm_kernels(isa);
  const int64_t mr = kr ? kr->mr : 1, nr = kr ? kr->nr : 16;
  const int64_t tmax = std::max<int64_t>(mr, kWinoBlockBytes / tile_bytes / mr * mr);
  const int64_t panels = (s.O + nr - 1) / nr;
  p.nblocks = (p.P + tmax - 1) / tmax;
  p.chunks = 1;
  if (p.nblocks < threads) {
    if (p.P >= threads * mr || panels < 2) {
      p.nblocks = std::min<int64_t>(p.P, threads);  // enough tiles: split them evenly
    } else {
      p.chunks = std::min<int64_t>(panels, (threads + p.nblocks - 1) / p.nblocks);
    }
  }
  p.T = (p.P + p.nblocks - 1) / p.nblocks;
  p.nblocks = (p.P + p.T - 1) / p.T;
  p.chunk_panels = (panels + p.chunks - 1) / p.chunks;
  p.chunks = (panels + p.chunk_panels - 1) / p.chunk_panels;
  p.slot_floats = detail::kWinoPoints * p.T * (p.ldv + p.ldm);
  return p;
}

void pack_winograd(PackedConv2d& p, const float* W) {
  const int64_t O = p.O, C = p.Cg;
  std::vector<float> u(static_cast<size_t>(O * C));
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j) {
      // U[i][j] = sum_{a,b} G[i][a] g[a][b] G[j][b] for every (o, c); g = W[o][a][b][c].
      for (int64_t o = 0; o < O; ++o)
        for (int64_t c = 0; c < C; ++c) {
          double acc = 0;
          for (int a = 0; a < 3; ++a) {
            if (kWinoG[i][a] == 0) continue;
            double row = 0;
            for (int b = 0; b < 3; ++b) row += static_cast<double>(W[((o * 3 + a) * 3 + b) * C + c]) * kWinoG[j][b];
            acc += kWinoG[i][a] * row;
          }
          u[o * C + c] = static_cast<float>(acc);
        }
      p.wino_b.push_back(pack_sgemm_b(u.data(), O, C, p.isa));
    }
}

// Blocks of T tiles over the threads; per block: input transform, 36 GEMMs (tiles x C) x (C x O) by
// the fp32 microkernel reading the transformed rows in place (full K: each element's sum order is
// fixed by C alone, so results do not depend on the block size or the thread count), output
// transform with the epilogue.
void conv2d_winograd(const Conv2dShape& s, const float* x, const PackedConv2d& w, float* y, const Epilogue& ep,
                     void* workspace, int threads) {
  if (!wino_shape(s))
    fail(Code::InvalidArgument, "conv2d: Winograd weights need a 3x3 convolution with stride 1 and dilation 1");
  const detail::SgemmKernels* kr = detail::sgemm_kernels(w.isa);
  if (!kr) fail(Code::Internal, "conv2d: no Winograd kernels for this ISA");
  const WinoPlan pl = wino_plan(s, w.isa, threads);
  const bool z = w.isa >= Isa::Avx512;
  const detail::WinoInputFn in_fn = z ? detail::avx512::f32_wino_input : detail::avx2::f32_wino_input;
  const detail::WinoOutputFn out_fn = z ? detail::avx512::f32_wino_output : detail::avx2::f32_wino_output;
  const int64_t OH = s.OH(), OW = s.OW(), C = s.C, O = s.O, nr = kr->nr, mr = kr->mr;
  const int64_t plane_v = pl.T * pl.ldv, plane_m = pl.T * pl.ldm;
  const int64_t ntasks = pl.workers();
  const int workers = static_cast<int>(std::min<int64_t>(threads, ntasks));
  const detail::UkEpilogue uk{nullptr, nullptr, nullptr, 0, Act::None, 0.f, false, true};
  AlignedPtr<float> own;
  if (!workspace) own = aligned_array<float>(static_cast<size_t>(workers * pl.slot_floats));
  float* const base = workspace ? static_cast<float*>(workspace) : own.get();
  std::atomic<int64_t> next{0};
  ThreadPool::global().run(workers, workers, [&](int64_t wk) {
    float* v = base + wk * pl.slot_floats;
    float* m = v + detail::kWinoPoints * plane_v;
    for (int64_t task = next.fetch_add(1); task < ntasks; task = next.fetch_add(1)) {
      const int64_t b = task / pl.chunks, chunk = task % pl.chunks;
      const int64_t t0 = b * pl.T, tb = std::min(pl.T, pl.P - t0);
      const int64_t p0 = chunk * pl.chunk_panels;
      const int64_t p1 = std::min<int64_t>(w.wino_b[0]->panels, p0 + pl.chunk_panels);
      in_fn(detail::WinoInput{x, s.H, s.W, C, pl.TH, pl.TW, s.pad_t, s.pad_l, v, pl.ldv, plane_v}, t0, t0 + tb);
      for (int xi = 0; xi < detail::kWinoPoints; ++xi) {
        const PackedSgemmB& B = *w.wino_b[xi];
        const float* a = v + xi * plane_v;
        float* c = m + xi * plane_m;
        for (int64_t p = p0; p < p1; ++p) {
          const float* bp = B.data.get() + p * C * nr;
          const int64_t ncols = std::min(nr, O - p * nr);
          for (int64_t r0 = 0; r0 < tb; r0 += mr)
            kr->ukernel_a(std::min(mr, tb - r0), C, a + r0 * pl.ldv, pl.ldv, bp, c + r0 * pl.ldm + p * nr, pl.ldm,
                          ncols, uk);
        }
      }
      out_fn(detail::WinoOutput{m, pl.ldm, plane_m, y, OH, OW, O, p0 * nr, std::min(O, p1 * nr), pl.TH, pl.TW,
                                ep.scale, ep.bias, ep.residual, ep.ldr, ep.act, ep.alpha},
             t0, t0 + tb);
    }
  });
}

void conv2d_scalar(const Conv2dShape& s, const float* x, const PackedConv2d& w, float* y, const Epilogue& ep,
                   int threads) {
  const int64_t OH = s.OH(), OW = s.OW(), M = s.N * OH * OW;
  const int64_t Cg = w.Cg, Og = s.O / s.groups, O = s.O;
  const float* wt = w.raw.get();
  const int64_t per_pixel = O * s.KH * s.KW * Cg * 2;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 17) / std::max<int64_t>(1, per_pixel));
  parallel_for(M, threads, grain, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const int64_t ow = m % OW, t = m / OW, oh = t % OH, n = t / OH;
      float* yo = y + m * O;
      for (int64_t o = 0; o < O; ++o) {
        const int64_t g = o / Og;
        float acc = 0.f;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.stride_h - s.pad_t + kh * s.dil_h;
          if (ih < 0 || ih >= s.H) continue;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t iw = ow * s.stride_w - s.pad_l + kw * s.dil_w;
            if (iw < 0 || iw >= s.W) continue;
            const float* xp = x + ((n * s.H + ih) * s.W + iw) * s.C + g * Cg;
            const float* wp = wt + ((o * s.KH + kh) * s.KW + kw) * Cg;
            for (int64_t c = 0; c < Cg; ++c) acc += xp[c] * wp[c];
          }
        }
        float v = acc;
        if (ep.scale) v *= ep.scale[o];
        if (ep.bias) v += ep.bias[o];
        if (ep.residual) v += ep.residual[m * ep.ldr + o];
        yo[o] = v;
      }
      apply_act_inplace(yo, O, ep.act, ep.alpha, Isa::Scalar);
    }
  });
}

void check_shape(const Conv2dShape& s, const PackedConv2d& w) {
  if (s.N < 0 || s.H < 1 || s.W < 1 || s.C < 1 || s.O < 1 || s.KH < 1 || s.KW < 1)
    fail(Code::InvalidArgument, "conv2d: sizes must be positive");
  if (s.stride_h < 1 || s.stride_w < 1 || s.dil_h < 1 || s.dil_w < 1)
    fail(Code::InvalidArgument, "conv2d: strides and dilations must be >= 1");
  if (s.pad_t < 0 || s.pad_l < 0 || s.pad_b < 0 || s.pad_r < 0)
    fail(Code::InvalidArgument, "conv2d: negative padding");
  if (s.groups < 1 || s.C % s.groups || s.O % s.groups)
    fail(Code::InvalidArgument, "conv2d: groups must divide C and O");
  if (s.OH() < 1 || s.OW() < 1) fail(Code::InvalidArgument, "conv2d: kernel larger than the padded input");
  if (w.O != s.O || w.KH != s.KH || w.KW != s.KW || w.groups != s.groups || w.Cg * s.groups != s.C)
    fail(Code::InvalidArgument, "conv2d: shape does not match the packed weights");
}

}  // namespace

int64_t Conv2dShape::OH() const { return (H + pad_t + pad_b - dil_h * (KH - 1) - 1) / stride_h + 1; }
int64_t Conv2dShape::OW() const { return (W + pad_l + pad_r - dil_w * (KW - 1) - 1) / stride_w + 1; }

std::unique_ptr<PackedConv2d> pack_conv2d(const float* W, int64_t O, int64_t KH, int64_t KW, int64_t Cg,
                                          int64_t groups, Isa isa, ConvPath path) {
  if (O < 1 || KH < 1 || KW < 1 || Cg < 1 || groups < 1 || O % groups)
    fail(Code::InvalidArgument, "pack_conv2d: bad weight shape (O must be a multiple of groups)");
  if (!W) fail(Code::InvalidArgument, "pack_conv2d: null weights");
  auto p = std::make_unique<PackedConv2d>();
  p->O = O; p->KH = KH; p->KW = KW; p->Cg = Cg; p->groups = groups; p->isa = isa;
  const int64_t Og = O / groups, K = KH * KW * Cg;
  if (isa == Isa::Scalar) {
    if (path != ConvPath::Auto) return nullptr;
    if (!isa_supported(isa)) fail(Code::Unsupported, "pack_conv2d: ISA not supported");
    p->raw = aligned_array<float>(static_cast<size_t>(O * K));
    std::memcpy(p->raw.get(), W, sizeof(float) * O * K);
    return p;
  }
  if (!isa_supported(isa)) fail(Code::Unsupported, "pack_conv2d: ISA not supported");
  if (path == ConvPath::Winograd) {
    if (KH != 3 || KW != 3 || groups != 1) return nullptr;
    pack_winograd(*p, W);
    return p;
  }
  int nb = direct_block(isa, Og, KH, KW, Cg);
  if (path == ConvPath::Alternative) nb = nb ? 0 : direct_width(isa, Og);
  if (nb) {
    pack_direct(*p, W, nb);
    return p;
  }
  for (int64_t g = 0; g < groups; ++g) p->group_b.push_back(pack_sgemm_b(W + g * Og * K, Og, K, isa));
  return p;
}

bool Conv2dShape::plain_1x1() const {
  return KH == 1 && KW == 1 && stride_h == 1 && stride_w == 1 && pad_t == 0 && pad_l == 0 && pad_b == 0 && pad_r == 0;
}

const char* conv2d_path(const PackedConv2d& w) {
  if (w.isa == Isa::Scalar) return "scalar";
  if (!w.wino_b.empty()) return "winograd";
  return w.direct_nb ? "direct" : "gemm";
}

size_t conv2d_winograd_workspace_bytes(const Conv2dShape& s, Isa isa, int threads) {
  threads = threads <= 0 ? default_threads() : threads;
  if (s.N < 1 || s.H < 1 || s.W < 1 || s.C < 1 || s.O < 1 || s.OH() < 1 || s.OW() < 1) return 0;
  const WinoPlan pl = wino_plan(s, isa, threads);
  const int64_t workers = std::min<int64_t>(threads, pl.workers());
  return static_cast<size_t>(workers * pl.slot_floats) * sizeof(float);
}

size_t conv2d_workspace_bytes(const Conv2dShape& s, const PackedConv2d& w, int threads) {
  if (w.isa == Isa::Scalar || w.direct_nb) return 0;
  if (!w.wino_b.empty()) return conv2d_winograd_workspace_bytes(s, w.isa, threads);
  return detail::gemm_workspace_bytes(threads <= 0 ? default_threads() : threads);
}

bool conv2d_winograd_pays(const Conv2dShape& s, Isa isa) {
  if (isa == Isa::Scalar || !wino_shape(s) || s.C < 8 || s.OH() < 1 || s.OW() < 1) return false;
  const int64_t tiles = wino_plan(s, isa, 1).P;
  const int64_t wino_bytes = int64_t{detail::kWinoPoints} * s.C * s.O * static_cast<int64_t>(sizeof(float));
  return tiles >= (wino_bytes <= kWinoWeightsCachedBytes ? 2 : 8);
}

void conv2d(const Conv2dShape& s, const float* x, const PackedConv2d& w, float* y, const Epilogue& ep,
            void* workspace, int threads) {
  check_shape(s, w);
  if (s.N == 0) return;
  if (!x || !y) fail(Code::InvalidArgument, "conv2d: null pointer");
  if (static_cast<int>(ep.act) < 0 || static_cast<int>(ep.act) >= kNumActs)
    fail(Code::InvalidArgument, "conv2d: unknown activation");
  if (!isa_supported(w.isa)) fail(Code::Unsupported, "conv2d: the weights' ISA is not supported by this CPU");
  const int64_t OH = s.OH(), OW = s.OW(), M = s.N * OH * OW;
  const int64_t G = s.groups, Cg = s.C / G, Og = s.O / G;
  const bool residual_is_c = detail::check_residual(ep, M, s.O, y, s.O);
  if (w.isa == Isa::Scalar) {
    conv2d_scalar(s, x, w, y, ep, threads <= 0 ? default_threads() : threads);
    return;
  }
  if (w.direct_nb) {
    conv2d_direct(s, x, w, y, ep, residual_is_c, threads <= 0 ? default_threads() : threads);
    return;
  }
  if (!w.wino_b.empty()) {
    conv2d_winograd(s, x, w, y, ep, workspace, threads <= 0 ? default_threads() : threads);
    return;
  }
  const bool plain = s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_t == 0 &&
                     s.pad_l == 0 && s.pad_b == 0 && s.pad_r == 0;
  std::vector<detail::RowMajorA> rows(G);
  std::vector<Im2colA> cols(G);
  std::vector<detail::GemmJob> jobs(G);
  for (int64_t g = 0; g < G; ++g) {
    detail::GemmJob& j = jobs[g];
    j.M = M;
    if (plain) {
      rows[g] = detail::RowMajorA{x + g * Cg, s.C, detail::pack_rows_for(w.isa)};
      detail::set_row_major_a(j, rows[g]);
    } else {
      cols[g] = Im2colA{&s, x + g * Cg, OH, OW, Cg, detail::pack_rows_for(w.isa)};
      j.a_ctx = &cols[g];
      j.pack_a = pack_a_im2col;
    }
    j.B = w.group_b[g].get();
    j.C = y + g * Og;
    j.ldc = s.O;
    j.ep = ep;
    if (ep.bias) j.ep.bias = ep.bias + g * Og;
    if (ep.scale) j.ep.scale = ep.scale + g * Og;
    if (ep.residual) j.ep.residual = ep.residual + g * Og;
    j.residual_is_c = residual_is_c;
  }
  detail::run_gemm_jobs(jobs.data(), G, workspace, threads);
}

}  // namespace slimrt::kernels

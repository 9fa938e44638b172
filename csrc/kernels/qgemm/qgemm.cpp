// int8 GEMM / conv driver: packing, ISA table, A preparation (quantize / widen / im2col),
// tiling over (row block, column panel) and threading. See qgemm.h for the formats.
#include "kernels/qgemm/qgemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "core/threadpool.h"
#include "kernels/gemm/sgemm.h"
#include "kernels/qgemm/qgemm_internal.h"

namespace slimrt::kernels {
namespace {

using detail::Q8Out;
using detail::Q8Tile;

// One row of the kernel table: the microkernel, the layout it needs, and the loops that
// go with it. A plan packed for one row is only ever run by that row.
struct Q8Config {
  int mr, nr, kg;
  int a_bytes;  // bytes per prepared A element: 1 (u8) or 2 (int16 0..255)
  detail::Q8Ukernel ukernel;
  detail::Q8EpiFn epilogue;
  detail::Q8QuantFn quant_u8, quant_a;  // quant_a writes the prepared A element type
  detail::Q8MinMaxFn minmax;
  detail::Q8IUkernel iukernel;  // indirect form of ukernel (implicit im2col), or null
  bool u8_residual;             // the epilogue reads Q8Tile::residual_u8 itself
  bool any_act = false;         // the epilogue applies every Act in registers (else only the inline ones)
};

constexpr int64_t kQ8RowBlockBytes = 131072;  // A bytes per row block of run_tiles (L2 resident)
constexpr int64_t kGemvWeightBytes = int64_t{16} << 20;  // run_parallel: weights cached across calls
constexpr int kMaxTile = 12 * 32;  // largest mr * nr (8x48, 6x64, 12x32, 16x16 are all <= 384)

// The VNNI rows: one per panel width. pack_q8_b picks the width (vnni_nr), and every run of
// that packing uses the same row (config_for(B)).
const Q8Config& vnni_config(int nr) {
  namespace d = detail;
#define SLIMRT_Q8_VNNI_ROW(MR, NR, FN, IFN)                                                              \
  static const Q8Config vnni##NR{MR, NR, 4, 1, d::vnni::FN, d::avx512::q8_epilogue, d::avx512::q8_quantize_u8, \
                                 d::avx512::q8_quantize_u8, d::avx512::q8_minmax, d::vnni::IFN, true, true};
  SLIMRT_Q8_VNNI_ROW(8, 48, q8_gemm_8x48c4, q8_igemm_8x48c4)
  SLIMRT_Q8_VNNI_ROW(6, 64, q8_gemm_6x64c4, q8_igemm_6x64c4)
  SLIMRT_Q8_VNNI_ROW(12, 32, q8_gemm_12x32c4, q8_igemm_12x32c4)
  SLIMRT_Q8_VNNI_ROW(16, 16, q8_gemm_16x16c4, q8_igemm_16x16c4)
#undef SLIMRT_Q8_VNNI_ROW
  switch (nr) {
    case 64: return vnni64;
    case 32: return vnni32;
    case 16: return vnni16;
    default: return vnni48;
  }
}

// Panel width for N columns on VNNI: the least zero padding (ceil(N/nr)*nr); ties go to the
// wider panel (fewer passes over A). 16 only when it pads strictly less than 32 (its tile
// issues one broadcast per vpdpbusd).
int vnni_nr(int64_t N) {
  int best = 48;
  int64_t best_pad = (N + 47) / 48 * 48;
  for (int nr : {64, 32, 16}) {
    const int64_t pad = (N + nr - 1) / nr * nr;
    if (pad < best_pad || (pad == best_pad && nr > best)) {
      best = nr;
      best_pad = pad;
    }
  }
  return best;
}

bool is_vnni(Isa isa) { return isa != Isa::Scalar && isa != Isa::Avx2 && isa != Isa::Avx512; }

const Q8Config& config_for(Isa isa, int nr = 48) {
  namespace d = detail;
  static const Q8Config scalar{4, 4, 1, 1, d::scalar::q8_gemm_4x4, d::scalar::q8_epilogue,
                               d::scalar::q8_quantize_u8, d::scalar::q8_quantize_u8, d::scalar::q8_minmax, nullptr, false};
  static const Q8Config avx2{6, 16, 2, 2, d::avx2::q8_gemm_6x16c2, d::avx2::q8_epilogue,
                             d::avx2::q8_quantize_u8, d::avx2::q8_quantize_i16, d::avx2::q8_minmax, nullptr, false};
  static const Q8Config avx512{8, 48, 2, 2, d::avx512::q8_gemm_8x48c2, d::avx512::q8_epilogue,
                               d::avx512::q8_quantize_u8, d::avx512::q8_quantize_i16, d::avx512::q8_minmax, nullptr, true, true};
  switch (isa) {
    case Isa::Scalar: return scalar;
    case Isa::Avx2: return avx2;
    case Isa::Avx512: return avx512;
    default: return vnni_config(nr);  // Avx512Vnni, Amx
  }
}
// The row a packing was made for.
const Q8Config& config_for(const PackedQ8B& B) { return config_for(B.isa, B.nr); }

[[noreturn]] void bad(const std::string& msg) { fail(Code::InvalidArgument, msg); }

void check_isa(Isa isa) {
  if (!isa_supported(isa)) fail(Code::Unsupported, std::string("ISA ") + isa_name(isa) + " is not supported here");
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

bool act_is_inline(Act a) {
  return a == Act::None || a == Act::Relu || a == Act::Relu6 || a == Act::LeakyRelu;
}

// Everything one GEMM run needs; A is already prepared (cfg's element type, Kp columns
// readable per row, columns >= K multiplied by zero weights).
struct Run {
  int64_t M = 0;
  const void* a = nullptr;
  int64_t lda = 0;  // elements
  const uint8_t* const* aind = nullptr;  // or indirect rows [M][taps] (cfg.iukernel; a unused)
  int64_t taps = 0, kgt = 0;
  const int32_t* a_zero = nullptr;
  const float* a_scale = nullptr;
  int64_t a_step = 0;
  const PackedQ8B* B = nullptr;
  const Q8Config* cfg = nullptr;
  Q8Out kind = Q8Out::Acc32;
  void* out = nullptr;
  int64_t ldo = 0;
  const float* w_scale = nullptr;
  const float* bias = nullptr;
  const float* residual = nullptr;
  const uint8_t* residual_u8 = nullptr;  // or a u8 residual, dequantized per tile
  float res_scale = 1.f, res_zero = 0.f;
  int64_t ldr = 0;
  Act act = Act::None;
  float alpha = 0.f, inv_out_scale = 1.f, out_zero = 0.f;
  const char* prefetch = nullptr;  // Q8StaticEpilogue::prefetch (honoured by a one-thread run)
  int64_t prefetch_bytes = 0;
};

size_t out_elem_bytes(Q8Out k) { return k == Q8Out::U8 ? 1 : 4; }

// Rows of prepared A per row block: about kQ8RowBlockBytes, a multiple of mr.
int64_t row_block_rows(const PackedQ8B& B, const Q8Config& cfg) {
  return std::max<int64_t>(1, kQ8RowBlockBytes / (B.Kp * cfg.a_bytes * cfg.mr)) * cfg.mr;
}

// Rows [m0, m1) x panels [p0, p1); per row block panel-outer, so one B panel stays in L1 for all
// the block's rows.
void run_tiles(const Run& r, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const PackedQ8B& B = *r.B;
  const Q8Config& cfg = *r.cfg;
  alignas(64) int32_t acc[kMaxTile];
  alignas(64) float tmp[kMaxTile];
  alignas(64) float rtmp[kMaxTile];  // a u8 residual tile, dequantized
  const bool inline_act = act_is_inline(r.act) || cfg.any_act;  // the epilogue applies r.act
  const int64_t kgroups = B.Kp / cfg.kg;
  const size_t osz = out_elem_bytes(r.kind);
  // Row blocks of about kQ8RowBlockBytes of A, all panels per block: the block stays in L2 while
  // every panel of B passes over it (one pass over all M rows per panel would stream A from L3
  // once per panel when A outgrows L2, e.g. 4096 x 384 u8 = 1.5 MB: a quarter slower).
  const int64_t mb = row_block_rows(B, cfg);
  // Static requantization on VNNI: a fused u8 epilogue on the microkernel's tile (q8_static_vnni.cpp),
  // with the panel's column terms computed once here.
  const bool static_fused = r.kind == Q8Out::U8 && r.a_step == 0 && !r.residual && is_vnni(B.isa) &&
                            act_is_inline(r.act) && cfg.nr <= 64;
  alignas(64) int32_t sf_zc[64];
  alignas(64) float sf_sc[64], sf_bias[64];
  detail::Q8StaticU8 sf;
  if (static_fused) {
    sf.negzc = sf_zc;
    sf.scale = sf_sc;
    sf.bias = sf_bias;
    sf.ldr = r.ldr;
    sf.res_scale = r.res_scale;
    sf.res_zero = r.res_zero;
    sf.act = r.act;
    sf.alpha = r.alpha;
    sf.inv_out_scale = r.inv_out_scale;
    sf.hi = r.act == Act::Relu6 ? std::min(512.f, 6.f * r.inv_out_scale) : 512.f;
    sf.out_zero = static_cast<int32_t>(r.out_zero);
    sf.ldo = r.ldo;
  }
  // The caller's prefetch range, a slice per tile (when this call runs the whole job: one thread).
  const bool whole = m0 == 0 && m1 == r.M && p0 == 0 && p1 == B.panels;
  const int64_t pf_steps = r.prefetch && whole ? ceil_div(m1 - m0, cfg.mr) * (p1 - p0) : 0;
  int64_t pf_step = 0;
  for (int64_t mb0 = m0; mb0 < m1; mb0 += mb) {
    const int64_t mb1 = std::min(m1, mb0 + mb);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * cfg.nr;
      const int nv = static_cast<int>(std::min<int64_t>(cfg.nr, B.N - n0));
      const int8_t* bp = B.data.get() + p * B.Kp * cfg.nr;
      if (static_fused) {
        for (int j = 0; j < cfg.nr; ++j) {
          const bool in = j < nv;
          sf_zc[j] = in ? static_cast<int32_t>(-static_cast<int64_t>(r.a_zero[0]) * B.colsum[n0 + j]) : 0;
          sf_sc[j] = in ? (r.a_scale ? r.a_scale[0] : 1.f) * r.w_scale[n0 + j] : 0.f;
          sf_bias[j] = in && r.bias ? r.bias[n0 + j] : 0.f;
        }
        sf.nv = nv;
      }
      for (int64_t m = mb0; m < mb1; m += cfg.mr) {
        const int rows = static_cast<int>(std::min<int64_t>(cfg.mr, mb1 - m));
        if (pf_steps) prefetch_slice(r.prefetch, r.prefetch_bytes, pf_step++, pf_steps);
        if (r.aind) cfg.iukernel(r.taps, r.kgt, r.aind + m * r.taps, rows, bp, acc);
        else cfg.ukernel(kgroups, static_cast<const char*>(r.a) + m * r.lda * cfg.a_bytes, r.lda, rows, bp, acc);
        if (static_fused) {
          sf.out = static_cast<uint8_t*>(r.out) + m * r.ldo + n0;
          sf.residual_u8 = r.residual_u8 ? r.residual_u8 + m * r.ldr + n0 : nullptr;
          detail::vnni::q8_static_u8_epilogue(cfg.nr, rows, acc, sf);
          continue;
        }
        Q8Tile t;
        t.acc = acc;
        t.ldacc = cfg.nr;
        t.rows = rows;
        t.nv = nv;
        t.colsum = B.colsum.get() + n0;
        t.a_zero = r.a_zero + m * r.a_step;
        t.a_scale = r.a_scale ? r.a_scale + m * r.a_step : nullptr;
        t.a_step = r.a_step;
        t.w_scale = r.w_scale ? r.w_scale + n0 : nullptr;
        t.bias = r.bias ? r.bias + n0 : nullptr;
        t.residual = r.residual ? r.residual + m * r.ldr + n0 : nullptr;
        t.ldr = r.ldr;
        if (r.residual_u8 && cfg.u8_residual) {
          t.residual_u8 = r.residual_u8 + m * r.ldr + n0;
          t.res_scale = r.res_scale;
          t.res_zero = r.res_zero;
        } else if (r.residual_u8) {
          for (int i = 0; i < rows; ++i) {
            const uint8_t* src = r.residual_u8 + (m + i) * r.ldr + n0;
            for (int j = 0; j < nv; ++j)
              rtmp[i * cfg.nr + j] = (static_cast<float>(src[j]) - r.res_zero) * r.res_scale;
          }
          t.residual = rtmp;
          t.ldr = cfg.nr;
        }
        t.kind = r.kind;
        t.out = static_cast<char*>(r.out) + (m * r.ldo + n0) * osz;
        t.ldo = r.ldo;
        t.act = inline_act ? r.act : Act::None;
        t.alpha = r.alpha;
        t.inv_out_scale = r.inv_out_scale;
        t.out_zero = r.out_zero;
        if (inline_act || r.kind == Q8Out::Acc32) {
          cfg.epilogue(t);
        } else if (r.kind == Q8Out::F32) {
          cfg.epilogue(t);
          for (int i = 0; i < rows; ++i)
            apply_act_inplace(static_cast<float*>(r.out) + (m + i) * r.ldo + n0, nv, r.act, r.alpha, B.isa);
        } else {  // u8 output after a non-trivial activation: float tile, act, then requantize
          void* dst = t.out;
          t.kind = Q8Out::F32;
          t.out = tmp;
          t.ldo = cfg.nr;
          cfg.epilogue(t);
          for (int i = 0; i < rows; ++i) {
            apply_act_inplace(tmp + i * cfg.nr, nv, r.act, r.alpha, B.isa);
            cfg.quant_u8(tmp + i * cfg.nr, nv, r.inv_out_scale, r.out_zero, static_cast<uint8_t*>(dst) + i * r.ldo);
          }
        }
      }
    }
  }
}

// Splits the tiles over threads: mostly along panels (each thread reads different weights),
// along rows as well when there are few panels. The split never changes a result.
// With nprep > 0, prep(c) for every c in [0, nprep) runs first (the preparation of A, e.g. the
// dynamic quantization of chunks of rows) in the same parallel region: each worker claims prep
// chunks, waits until all of them are done, then claims tiles. One fork-join instead of two
// (fewer waits on a busy core); a chunk is only ever claimed by a running worker, so the wait ends.
void run_parallel(const Run& r, int threads, int64_t nprep = 0,
                  const std::function<void(int64_t)>& prep = nullptr) {
  const Q8Config& cfg = *r.cfg;
  const int64_t panels = r.B->panels, mtiles = ceil_div(r.M, cfg.mr);
  const double work = static_cast<double>(r.M) * r.B->N * r.B->Kp;
  if (threads <= 1 || work < 262144.0 || panels * mtiles == 1) {
    for (int64_t c = 0; c < nprep; ++c) prep(c);
    run_tiles(r, 0, r.M, 0, panels);
    return;
  }
  // One row tile (batch 1 .. mr) reads each weight once: one panel chunk per thread while the
  // weights stay cached across calls (each core keeps its share in its L2); else 4 items per thread.
  const bool gemv = mtiles == 1 && panels * r.B->Kp * cfg.nr <= kGemvWeightBytes;
  const int64_t want = (gemv ? 1 : 4) * static_cast<int64_t>(threads);
  const int64_t pc = std::min(panels, want);
  const int64_t mc = std::min(mtiles, ceil_div(want, pc));
  const int64_t ppt = ceil_div(panels, pc), mpt = ceil_div(mtiles, mc);
  const int64_t np = ceil_div(panels, ppt), nm = ceil_div(mtiles, mpt);
  auto item = [&](int64_t t) {
    const int64_t pi = t % np, mi = t / np;
    const int64_t p0 = pi * ppt, p1 = std::min(panels, p0 + ppt);
    const int64_t m0 = mi * mpt * cfg.mr, m1 = std::min(r.M, m0 + mpt * cfg.mr);
    run_tiles(r, m0, m1, p0, p1);
  };
  const int64_t items = np * nm;
  if (nprep == 0) {
    ThreadPool::global().run(items, threads, item);
    return;
  }
  std::atomic<int64_t> next_prep{0}, done{0}, next_item{0};
  ThreadPool::global().run(threads, threads, [&](int64_t) {
    for (int64_t c; (c = next_prep.fetch_add(1)) < nprep;) {
      prep(c);
      done.fetch_add(1, std::memory_order_release);
    }
    while (done.load(std::memory_order_acquire) < nprep) std::this_thread::yield();
    for (int64_t t; (t = next_item.fetch_add(1)) < items;) item(t);
  });
}

// run_parallel for an A that must be prepared first: prep(m0, m1) prepares rows [m0, m1) (the
// dynamic quantization) before any tile reads them. One thread, or more than a row block per
// thread: row split, each item prepares its rows and runs every panel over them while they are
// still in L2 (A is read once; a panel split would stream all of A once per panel item).
// Otherwise (few rows, e.g. one sequence): run_parallel's panel split with the preparation as
// its first step, in chunks of about 16K elements.
void run_parallel_prep(const Run& r, int threads, const std::function<void(int64_t, int64_t)>& prep) {
  const Q8Config& cfg = *r.cfg;
  const PackedQ8B& B = *r.B;
  const int64_t mb = row_block_rows(B, cfg);
  const double work = static_cast<double>(r.M) * B.N * B.Kp;
  if (threads <= 1 || work < 262144.0) {
    for (int64_t m0 = 0; m0 < r.M; m0 += mb) {
      const int64_t m1 = std::min(r.M, m0 + mb);
      prep(m0, m1);
      run_tiles(r, m0, m1, 0, B.panels);
    }
    return;
  }
  if (r.M >= threads * mb) {
    const int64_t items = threads * ceil_div(r.M, threads * mb);  // a multiple of threads, <= mb rows each
    const int64_t rows = round_up(ceil_div(r.M, items), cfg.mr);
    ThreadPool::global().run(ceil_div(r.M, rows), threads, [&](int64_t t) {
      const int64_t m0 = t * rows, m1 = std::min(r.M, m0 + rows);
      prep(m0, m1);
      run_tiles(r, m0, m1, 0, B.panels);
    });
    return;
  }
  const int64_t qrows = std::max<int64_t>(1, 16384 / B.Kp);
  run_parallel(r, threads, ceil_div(r.M, qrows),
               [&](int64_t c) { prep(c * qrows, std::min(r.M, (c + 1) * qrows)); });
}

int resolve_threads(int threads) { return threads <= 0 ? default_threads() : threads; }

// Workspace carving: prepared A rows, then per-row scale and zero point.
struct DenseWs {
  void* a;
  float* scale;
  int32_t* zero;
};
DenseWs carve_dense(void* ws, int64_t M, int64_t Kp) {
  char* p = static_cast<char*>(ws);
  DenseWs d;
  d.a = p;
  p += align64(static_cast<size_t>(M) * Kp * 2);
  d.scale = reinterpret_cast<float*>(p);
  p += align64(static_cast<size_t>(M) * 4);
  d.zero = reinterpret_cast<int32_t*>(p);
  return d;
}

void check_dense(int64_t M, const void* A, int64_t lda, const PackedQ8B& B, const void* C, int64_t ldc) {
  if (M < 0) bad("q8 gemm: negative M");
  if (!B.data) bad("q8 gemm: empty packed weights");
  if (M > 0 && (!A || !C)) bad("q8 gemm: null operand");
  if (lda < B.K) bad("q8 gemm: lda < K");
  if (ldc < B.N) bad("q8 gemm: ldc < N");
  check_isa(B.isa);
}

// Copies u8 rows into the prepared layout (u8 or int16) with Kp columns, zero padded.
void prepare_rows_u8(const Q8Config& cfg, int64_t M, int64_t K, int64_t Kp, const uint8_t* A, int64_t lda,
                     void* dst, int threads) {
  parallel_for(M, threads, std::max<int64_t>(1, 65536 / std::max<int64_t>(K, 1)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const uint8_t* src = A + m * lda;
      if (cfg.a_bytes == 1) {
        uint8_t* d = static_cast<uint8_t*>(dst) + m * Kp;
        std::memcpy(d, src, K);
        std::memset(d + K, 0, Kp - K);
      } else {
        int16_t* d = static_cast<int16_t*>(dst) + m * Kp;
        for (int64_t k = 0; k < K; ++k) d[k] = src[k];
        for (int64_t k = K; k < Kp; ++k) d[k] = 0;
      }
    }
  });
}

// Static-quantization runs: A given as u8 with one (scale, zero). Uses A in place when its
// rows are already in the kernel's layout (u8 and K a multiple of 4), else prepares a copy.
void run_static(int64_t M, const uint8_t* Aq, int64_t lda, float a_scale, int32_t a_zero, const PackedQ8B& B,
                Run& r, void* workspace, int threads) {
  if (a_zero < 0 || a_zero > 255) bad("q8 gemm: a_zero must be in [0, 255]");
  const Q8Config& cfg = config_for(B);
  threads = resolve_threads(threads);
  AlignedPtr<char> own;
  const float scale_v = a_scale;
  const int32_t zero_v = a_zero;
  r.M = M;
  r.B = &B;
  r.cfg = &cfg;
  r.a_zero = &zero_v;
  r.a_scale = &scale_v;
  r.a_step = 0;
  if (cfg.a_bytes == 1 && B.K == B.Kp) {
    r.a = Aq;
    r.lda = lda;
  } else {
    if (!workspace) {
      own = aligned_array<char>(q8_dense_workspace(M, B.K, threads));
      workspace = own.get();
    }
    prepare_rows_u8(cfg, M, B.K, B.Kp, Aq, lda, workspace, threads);
    r.a = workspace;
    r.lda = B.Kp;
  }
  run_parallel(r, threads);
}

void set_epilogue(Run& r, const Epilogue& ep, const float* C) {
  if (ep.scale) bad("q8 gemm: Epilogue.scale must be null (w_scale is the per-column scale)");
  if (static_cast<int>(ep.act) < 0 || static_cast<int>(ep.act) >= kNumActs) bad("q8 gemm: unknown activation");
  r.bias = ep.bias;
  r.residual = ep.residual;
  r.ldr = ep.ldr;
  if (ep.residual && ep.ldr < r.B->N && r.M > 1) bad("q8 gemm: residual ldr < N");
  if (ep.residual == C && ep.residual && ep.ldr != r.ldo) bad("q8 gemm: residual aliases C with another stride");
  r.act = ep.act;
  r.alpha = ep.alpha;
}

}  // namespace

// ---- packing --------------------------------------------------------------------------------

std::unique_ptr<PackedQ8B> pack_q8_b(const int8_t* Wq, int64_t N, int64_t K, Isa isa) {
  if (N < 1 || K < 1) bad("pack_q8_b: N and K must be >= 1");
  if (K > kQ8MaxK)
    bad("pack_q8_b: K = " + std::to_string(K) + " exceeds " + std::to_string(kQ8MaxK) +
        " (int32 accumulators could overflow: |acc| <= K*255*128); split the reduction");
  if (!Wq) bad("pack_q8_b: null weights");
  check_isa(isa);
  const Q8Config& cfg = config_for(isa, is_vnni(isa) ? vnni_nr(N) : 48);
  auto p = std::make_unique<PackedQ8B>();
  p->N = N;
  p->K = K;
  p->Kp = round_up(K, 4);
  p->isa = isa;
  p->nr = cfg.nr;
  p->kg = cfg.kg;
  p->panels = ceil_div(N, cfg.nr);
  const int64_t nr = cfg.nr, kg = cfg.kg, Kp = p->Kp;
  const size_t bytes = static_cast<size_t>(p->panels) * Kp * nr;
  p->data = aligned_array<int8_t>(bytes);
  std::memset(p->data.get(), 0, bytes);
  p->colsum = aligned_array<int32_t>(p->panels * nr);
  std::memset(p->colsum.get(), 0, sizeof(int32_t) * p->panels * nr);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t pn = n / nr, j = n % nr;
    int8_t* dst = p->data.get() + pn * Kp * nr + j * kg;
    const int8_t* src = Wq + n * K;
    int32_t sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      dst[(k / kg) * nr * kg + (k % kg)] = src[k];
      sum += src[k];
    }
    p->colsum[n] = sum;
  }
  return p;
}

// ---- quantization helpers -------------------------------------------------------------------

void q8_dynamic_params(float mn, float mx, float* scale, int32_t* zero) {
  const float lo = mn < 0.f ? mn : 0.f, hi = mx > 0.f ? mx : 0.f;
  const float s = (hi - lo) / 255.f;
  const float inv = 1.f / s;
  if (!(s > 0.f) || !std::isfinite(s) || !std::isfinite(inv)) {
    *scale = 1.f;
    *zero = 0;
    return;
  }
  float z = std::nearbyint(-lo * inv);
  z = z < 0.f ? 0.f : (z > 255.f ? 255.f : z);
  *scale = s;
  *zero = static_cast<int32_t>(z);
}

void quantize_u8(const float* x, int64_t n, float scale, int32_t zero, uint8_t* out, Isa isa) {
  if (n < 0) bad("quantize_u8: negative length");
  if (!(scale > 0.f) || !std::isfinite(scale)) bad("quantize_u8: scale must be positive and finite");
  if (zero < 0 || zero > 255) bad("quantize_u8: zero point must be in [0, 255]");
  check_isa(isa);
  config_for(isa).quant_u8(x, n, 1.f / scale, static_cast<float>(zero), out);
}

void dequantize_u8(const uint8_t* q, int64_t n, float scale, int32_t zero, float* out) {
  if (n < 0) bad("dequantize_u8: negative length");
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int32_t>(q[i]) - zero) * scale;
}

void quantize_rows_u8(int64_t M, int64_t K, const float* A, int64_t lda, uint8_t* q, int64_t ldq, float* scale,
                      int32_t* zero, Isa isa, int threads) {
  if (M < 0 || K < 0 || lda < K || ldq < K) bad("quantize_rows_u8: bad sizes");
  check_isa(isa);
  const Q8Config& cfg = config_for(isa);
  parallel_for(M, resolve_threads(threads), std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)),
               [&](int64_t m0, int64_t m1) {
                 for (int64_t m = m0; m < m1; ++m) {
                   float mn, mx;
                   cfg.minmax(A + m * lda, K, &mn, &mx);
                   q8_dynamic_params(mn, mx, &scale[m], &zero[m]);
                   cfg.quant_u8(A + m * lda, K, 1.f / scale[m], static_cast<float>(zero[m]), q + m * ldq);
                 }
               });
}

// ---- dense entry points ---------------------------------------------------------------------

size_t q8_dense_workspace(int64_t M, int64_t K, int threads) {
  const int64_t Kp = round_up(std::max<int64_t>(K, 1), 4);
  M = std::max<int64_t>(M, 1);
  return align64(static_cast<size_t>(M) * Kp * 2) + 2 * align64(static_cast<size_t>(M) * 4);
}

void q8_dense_dynamic(int64_t M, const float* A, int64_t lda, const PackedQ8B& B, const float* w_scale, float* C,
                      int64_t ldc, const Epilogue& ep, void* workspace, int threads) {
  check_dense(M, A, lda, B, C, ldc);
  if (!w_scale) bad("q8_dense_dynamic: null w_scale");
  if (M == 0) return;
  const Q8Config& cfg = config_for(B);
  threads = resolve_threads(threads);
  AlignedPtr<char> own;
  if (!workspace) {
    own = aligned_array<char>(q8_dense_workspace(M, B.K, threads));
    workspace = own.get();
  }
  const DenseWs w = carve_dense(workspace, M, B.Kp);
  const int64_t K = B.K, Kp = B.Kp;
  // Quantization of rows [m0, m1), inside the GEMM's parallel region (run_parallel_prep).
  auto quantize_rows = [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      float mn, mx;
      cfg.minmax(A + m * lda, K, &mn, &mx);
      q8_dynamic_params(mn, mx, &w.scale[m], &w.zero[m]);
      char* row = static_cast<char*>(w.a) + m * Kp * cfg.a_bytes;
      cfg.quant_a(A + m * lda, K, 1.f / w.scale[m], static_cast<float>(w.zero[m]), row);
      std::memset(row + K * cfg.a_bytes, 0, (Kp - K) * cfg.a_bytes);
    }
  };
  Run r;
  r.M = M;
  r.a = w.a;
  r.lda = Kp;
  r.a_zero = w.zero;
  r.a_scale = w.scale;
  r.a_step = 1;
  r.B = &B;
  r.cfg = &cfg;
  r.kind = Q8Out::F32;
  r.out = C;
  r.ldo = ldc;
  r.w_scale = w_scale;
  set_epilogue(r, ep, C);
  run_parallel_prep(r, threads, quantize_rows);
}

void q8_dense_static(int64_t M, const uint8_t* Aq, int64_t lda, float a_scale, int32_t a_zero, const PackedQ8B& B,
                     const float* w_scale, const float* bias, Act act, float alpha, float out_scale,
                     int32_t out_zero, uint8_t* Cq, int64_t ldc, void* workspace, int threads) {
  check_dense(M, Aq, lda, B, Cq, ldc);
  if (!w_scale) bad("q8_dense_static: null w_scale");
  if (!(out_scale > 0.f) || !std::isfinite(out_scale)) bad("q8_dense_static: out_scale must be positive");
  if (out_zero < 0 || out_zero > 255) bad("q8_dense_static: out_zero must be in [0, 255]");
  if (static_cast<int>(act) < 0 || static_cast<int>(act) >= kNumActs) bad("q8_dense_static: unknown activation");
  if (M == 0) return;
  Run r;
  r.kind = Q8Out::U8;
  r.out = Cq;
  r.ldo = ldc;
  r.w_scale = w_scale;
  r.bias = bias;
  r.act = act;
  r.alpha = alpha;
  r.inv_out_scale = 1.f / out_scale;
  r.out_zero = static_cast<float>(out_zero);
  run_static(M, Aq, lda, a_scale, a_zero, B, r, workspace, threads);
}

void q8_dense_static_f32(int64_t M, const uint8_t* Aq, int64_t lda, float a_scale, int32_t a_zero,
                         const PackedQ8B& B, const float* w_scale, float* C, int64_t ldc, const Epilogue& ep,
                         void* workspace, int threads) {
  check_dense(M, Aq, lda, B, C, ldc);
  if (!w_scale) bad("q8_dense_static_f32: null w_scale");
  if (M == 0) return;
  Run r;
  r.M = M;
  r.B = &B;
  r.kind = Q8Out::F32;
  r.out = C;
  r.ldo = ldc;
  r.w_scale = w_scale;
  set_epilogue(r, ep, C);
  run_static(M, Aq, lda, a_scale, a_zero, B, r, workspace, threads);
}

namespace {
// Fills the epilogue fields of a Run from a Q8StaticEpilogue (checked).
void set_static_epilogue(Run& r, const Q8StaticEpilogue& ep, const char* what) {
  if (static_cast<int>(ep.act) < 0 || static_cast<int>(ep.act) >= kNumActs) bad(std::string(what) + ": unknown activation");
  if (ep.out_scale < 0.f || !std::isfinite(ep.out_scale)) bad(std::string(what) + ": out_scale must be >= 0 and finite");
  if (ep.out_scale > 0.f && (ep.out_zero < 0 || ep.out_zero > 255)) bad(std::string(what) + ": out_zero must be in [0, 255]");
  if (ep.residual && ep.residual_u8) bad(std::string(what) + ": give a float or a u8 residual, not both");
  if (ep.residual_u8 && (!(ep.res_scale > 0.f) || !std::isfinite(ep.res_scale) || ep.res_zero < 0 || ep.res_zero > 255))
    bad(std::string(what) + ": bad residual quantization parameters");
  r.kind = ep.out_scale > 0.f ? Q8Out::U8 : Q8Out::F32;
  r.bias = ep.bias;
  r.act = ep.act;
  r.alpha = ep.alpha;
  r.residual = ep.residual;
  r.residual_u8 = ep.residual_u8;
  r.res_scale = ep.res_scale;
  r.res_zero = static_cast<float>(ep.res_zero);
  r.ldr = ep.ldr;
  r.inv_out_scale = ep.out_scale > 0.f ? 1.f / ep.out_scale : 1.f;
  r.out_zero = static_cast<float>(ep.out_zero);
  if (ep.prefetch && ep.prefetch_bytes > 0) {
    r.prefetch = static_cast<const char*>(ep.prefetch);
    r.prefetch_bytes = ep.prefetch_bytes;
  }
}
}  // namespace

void q8_dense_static_ex(int64_t M, const uint8_t* Aq, int64_t lda, float a_scale, int32_t a_zero, const PackedQ8B& B,
                        const float* w_scale, const Q8StaticEpilogue& ep, void* C, int64_t ldc, void* workspace,
                        int threads) {
  check_dense(M, Aq, lda, B, C, ldc);
  if (!w_scale) bad("q8_dense_static_ex: null w_scale");
  if ((ep.residual || ep.residual_u8) && ep.ldr < B.N && M > 1) bad("q8_dense_static_ex: residual ldr < N");
  if (M == 0) return;
  Run r;
  set_static_epilogue(r, ep, "q8_dense_static_ex");
  r.out = C;
  r.ldo = ldc;
  r.w_scale = w_scale;
  run_static(M, Aq, lda, a_scale, a_zero, B, r, workspace, threads);
}

void q8_gemm_acc(int64_t M, const uint8_t* Aq, int64_t lda, int32_t a_zero, const PackedQ8B& B, int32_t* acc,
                 int64_t ldacc, void* workspace, int threads) {
  check_dense(M, Aq, lda, B, acc, ldacc);
  if (M == 0) return;
  Run r;
  r.kind = Q8Out::Acc32;
  r.out = acc;
  r.ldo = ldacc;
  run_static(M, Aq, lda, 1.f, a_zero, B, r, workspace, threads);
  // run_static set a_scale; Acc32 never reads it.
}

// ---- convolution ----------------------------------------------------------------------------

namespace {

constexpr int64_t kConvRowBlock = 96;  // rows of im2col per block: a multiple of every mr (4, 6, 8)

void check_conv(const Conv2dShape& s, const PackedQ8Conv2d& w) {
  if (s.N < 1 || s.H < 1 || s.W < 1 || s.C < 1 || s.O < 1 || s.KH < 1 || s.KW < 1)
    bad("q8_conv2d: sizes must be >= 1");
  if (s.stride_h < 1 || s.stride_w < 1 || s.dil_h < 1 || s.dil_w < 1 || s.groups < 1)
    bad("q8_conv2d: strides, dilations and groups must be >= 1");
  if (s.pad_t < 0 || s.pad_l < 0 || s.pad_b < 0 || s.pad_r < 0) bad("q8_conv2d: negative padding");
  if (s.OH() < 1 || s.OW() < 1) bad("q8_conv2d: kernel larger than the padded input");
  if (w.O != s.O || w.KH != s.KH || w.KW != s.KW || w.groups != s.groups || w.Cg * s.groups != s.C)
    bad("q8_conv2d: shape does not match the packed weights");
  check_isa(w.isa);
}

bool conv_is_direct(const Conv2dShape& s, const Q8Config& cfg) {
  return s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_t == 0 && s.pad_l == 0 &&
         s.pad_b == 0 && s.pad_r == 0 && s.groups == 1 && cfg.a_bytes == 1 && s.C % 4 == 0;
}

// Conv paths: direct (1x1 GEMM on x), implicit (VNNI indirect kernel: per row block a table of
// pointers to the input pixel of every tap, padding taps pointing at a row of zero points;
// needs Cg % 4 == 0 so that every tap is whole groups of 4), or im2col row blocks.
bool conv_is_implicit(const Conv2dShape& s, const Q8Config& cfg) {
  return cfg.iukernel && !conv_is_direct(s, cfg) && (s.C / s.groups) % 4 == 0;
}

// Per-worker scratch of the im2col / implicit paths: an im2col block, or the pointer table
// [kConvRowBlock][taps] plus one zero-point row of Cg bytes.
size_t conv_block_bytes(const Conv2dShape& s) {
  const int64_t Cg = s.C / std::max<int64_t>(s.groups, 1);
  const int64_t Kp = round_up(s.KH * s.KW * Cg, 4);
  const size_t im2col = align64(static_cast<size_t>(kConvRowBlock) * Kp * 2);
  const size_t implicit = align64(static_cast<size_t>(kConvRowBlock) * s.KH * s.KW * sizeof(void*)) +
                          align64(static_cast<size_t>(Cg));
  return std::max(im2col, implicit);
}

// Pointer table of rows [r0, r0 + rows) of image n, group g: tbl[i * taps + t].
void indirect_block(const Conv2dShape& s, const uint8_t* xq, int64_t n, int64_t g, int64_t Cg, const uint8_t* zrow,
                    int64_t r0, int64_t rows, const uint8_t** tbl) {
  const int64_t OW = s.OW();
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t m = r0 + i, oh = m / OW, ow = m % OW;
    const int64_t ih0 = oh * s.stride_h - s.pad_t, iw0 = ow * s.stride_w - s.pad_l;
    const uint8_t** d = tbl + i * s.KH * s.KW;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = ih0 + kh * s.dil_h;
      const bool row_in = ih >= 0 && ih < s.H;
      const uint8_t* xrow = xq + ((n * s.H + (row_in ? ih : 0)) * s.W) * s.C + g * Cg;
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const int64_t iw = iw0 + kw * s.dil_w;
        *d++ = row_in && iw >= 0 && iw < s.W ? xrow + iw * s.C : zrow;
      }
    }
  }
}

struct ConvWs {
  uint8_t* xq;
  float* scale;
  int32_t* zero;
  char* blocks;  // per worker: kConvRowBlock x Kp x 2 bytes
  size_t block_bytes;
};

ConvWs carve_conv(void* ws, const Conv2dShape& s) {
  const int64_t Kp = round_up(s.KH * s.KW * (s.C / std::max<int64_t>(s.groups, 1)), 4);
  char* p = static_cast<char*>(ws);
  ConvWs c;
  c.xq = reinterpret_cast<uint8_t*>(p);
  p += align64(static_cast<size_t>(s.N) * s.H * s.W * s.C);
  c.scale = reinterpret_cast<float*>(p);
  p += align64(static_cast<size_t>(s.N) * 4);
  c.zero = reinterpret_cast<int32_t*>(p);
  p += align64(static_cast<size_t>(s.N) * 4);
  c.blocks = p;
  c.block_bytes = conv_block_bytes(s);
  (void)Kp;
  return c;
}

// dst[0, n) = src[0, n) for the short runs of im2col (n <= 64 here): fixed-size moves (inlined, two
// of them overlapping at the end) instead of a call to memcpy, which costs more than the copy.
inline void copy_short(uint8_t* dst, const uint8_t* src, int64_t n) {
  if (n >= 16) {
    for (int64_t i = 0; i + 16 < n; i += 16) std::memcpy(dst + i, src + i, 16);
    std::memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(dst, src, 8);
    std::memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(dst, src, 4);
    std::memcpy(dst + n - 4, src + n - 4, 4);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

// im2col of u8 rows with CG (1..4) channels per tap (network stems: C = 3): compile-time tap
// copies, the shape in locals (byte stores may alias any struct field, which would otherwise be
// reloaded per tap).
template <int CG>
void im2col_block_small(const Conv2dShape& shape, const uint8_t* xq, int64_t n, int64_t g, int32_t zero, int64_t r0,
                        int64_t rows, int64_t Kp, uint8_t* dst) {
  const int64_t H = shape.H, W = shape.W, C = shape.C, KH = shape.KH, KW = shape.KW, OW = shape.OW();
  const int64_t sh = shape.stride_h, sw = shape.stride_w, dh = shape.dil_h, dw = shape.dil_w;
  const int64_t pt = shape.pad_t, pl = shape.pad_l, K = KH * KW * CG;
  const uint8_t z = static_cast<uint8_t>(zero);
  const uint8_t* img = xq + n * H * W * C + g * CG;
  int64_t oh = r0 / OW, ow = r0 % OW;
  for (int64_t i = 0; i < rows; ++i, ow = ow + 1 == OW ? (++oh, 0) : ow + 1) {
    const int64_t ih0 = oh * sh - pt, iw0 = ow * sw - pl;
    uint8_t* d = dst + i * Kp;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t ih = ih0 + kh * dh;
      if (ih < 0 || ih >= H) {
        for (int64_t k = 0; k < KW * CG; ++k) d[k] = z;
        d += KW * CG;
        continue;
      }
      const uint8_t* row = img + ih * W * C;
      if (dw == 1 && C == CG && iw0 >= 0 && iw0 + KW <= W) {  // the kernel row is contiguous in x
        if (KW == 3) std::memcpy(d, row + iw0 * C, 3 * CG);  // a fixed size: inlined moves (stems)
        else copy_short(d, row + iw0 * C, KW * CG);
        d += KW * CG;
        continue;
      }
      for (int64_t kw = 0; kw < KW; ++kw, d += CG) {
        const int64_t iw = iw0 + kw * dw;
        if (iw >= 0 && iw < W) {
          for (int c = 0; c < CG; ++c) d[c] = row[iw * C + c];
        } else {
          for (int c = 0; c < CG; ++c) d[c] = z;
        }
      }
    }
    for (int64_t k = K; k < Kp; ++k) dst[i * Kp + k] = 0;
  }
}

// im2col rows [r0, r0 + rows) of image n, group g, in the prepared layout, Kp columns.
void im2col_block(const Conv2dShape& s, const uint8_t* xq, int64_t n, int64_t g, int64_t Cg, int32_t zero,
                  int64_t r0, int64_t rows, int64_t Kp, int a_bytes, void* dst) {
  if (a_bytes == 1 && Cg <= 4) {
    uint8_t* d = static_cast<uint8_t*>(dst);
    switch (Cg) {
      case 1: return im2col_block_small<1>(s, xq, n, g, zero, r0, rows, Kp, d);
      case 2: return im2col_block_small<2>(s, xq, n, g, zero, r0, rows, Kp, d);
      case 3: return im2col_block_small<3>(s, xq, n, g, zero, r0, rows, Kp, d);
      default: return im2col_block_small<4>(s, xq, n, g, zero, r0, rows, Kp, d);
    }
  }
  const int64_t OW = s.OW(), K = s.KH * s.KW * Cg;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t m = r0 + i, oh = m / OW, ow = m % OW;
    const int64_t ih0 = oh * s.stride_h - s.pad_t, iw0 = ow * s.stride_w - s.pad_l;
    uint8_t* d8 = static_cast<uint8_t*>(dst) + i * Kp;
    int16_t* d16 = static_cast<int16_t*>(dst) + i * Kp;
    int64_t k = 0;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = ih0 + kh * s.dil_h;
      for (int64_t kw = 0; kw < s.KW; ++kw, k += Cg) {
        const int64_t iw = iw0 + kw * s.dil_w;
        const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
        const uint8_t* src = inside ? xq + ((n * s.H + ih) * s.W + iw) * s.C + g * Cg : nullptr;
        if (a_bytes == 1) {
          if (inside) std::memcpy(d8 + k, src, Cg);
          else std::memset(d8 + k, zero, Cg);
        } else {
          for (int64_t c = 0; c < Cg; ++c) d16[k + c] = static_cast<int16_t>(inside ? src[c] : zero);
        }
      }
    }
    if (a_bytes == 1) std::memset(d8 + K, 0, Kp - K);
    else for (int64_t kk = K; kk < Kp; ++kk) d16[kk] = 0;
  }
}

// The GEMM of a convolution on the u8 NHWC input xq, whose (zero, scale) are per image
// (step 1) or one for the tensor (step 0). proto holds the output kind, the base pointers of
// y / w_scale / bias / residual and the epilogue; each (image, group, row block) offsets them.
void conv_gemm(const Conv2dShape& s, const uint8_t* xq, const int32_t* zero, const float* scale, int64_t step,
               const PackedQ8Conv2d& w, const Q8Config& cfg, const Run& proto, char* blocks, size_t block_bytes,
               int threads) {
  const int64_t OH = s.OH(), OW = s.OW(), P = OH * OW, img = s.H * s.W * s.C;
  const int64_t Cg = w.Cg, Og = s.O / s.groups;
  const size_t osz = out_elem_bytes(proto.kind);
  auto base_run = [&](int64_t n, int64_t g) {
    Run r = proto;
    r.a_zero = zero + n * step;
    r.a_scale = scale + n * step;
    r.a_step = 0;
    r.B = w.group_b[g].get();
    r.cfg = &cfg;
    r.out = static_cast<char*>(proto.out) + ((n * P) * s.O + g * Og) * osz;
    r.ldo = s.O;
    r.w_scale = proto.w_scale + g * Og;
    r.bias = proto.bias ? proto.bias + g * Og : nullptr;
    r.residual = proto.residual ? proto.residual + (n * P) * proto.ldr + g * Og : nullptr;
    r.residual_u8 = proto.residual_u8 ? proto.residual_u8 + (n * P) * proto.ldr + g * Og : nullptr;
    return r;
  };
  if (conv_is_direct(s, cfg)) {  // 1x1: the quantized NHWC input is the GEMM's A
    for (int64_t n = 0; n < s.N; ++n) {
      Run r = base_run(n, 0);
      r.M = P;
      r.a = xq + n * img;
      r.lda = s.C;
      run_parallel(r, threads);
    }
    return;
  }
  const int64_t Kp = w.group_b[0]->Kp, panels = w.group_b[0]->panels;
  const int64_t nrb = ceil_div(P, kConvRowBlock), nblocks = s.N * nrb * s.groups;
  const int64_t pchunks = std::min(panels, std::max<int64_t>(1, ceil_div(2 * threads, nblocks)));
  const int64_t ppc = ceil_div(panels, pchunks), np = ceil_div(panels, ppc);
  const int64_t items = nblocks * np;
  const bool implicit = conv_is_implicit(s, cfg);
  std::atomic<int64_t> next{0};
  const int workers = static_cast<int>(std::min<int64_t>(threads, items));
  ThreadPool::global().run(workers, workers, [&](int64_t wid) {
    void* buf = blocks + wid * block_bytes;
    uint8_t* zrow = reinterpret_cast<uint8_t*>(blocks + wid * block_bytes + block_bytes - align64(Cg));
    int zfill = -1;  // the byte zrow holds
    for (int64_t it; (it = next.fetch_add(1)) < items;) {
      const int64_t pi = it % np, b = it / np;
      const int64_t g = b % s.groups, rb = (b / s.groups) % nrb, n = b / (s.groups * nrb);
      const int64_t r0 = rb * kConvRowBlock, rows = std::min(kConvRowBlock, P - r0);
      Run r = base_run(n, g);
      r.M = rows;
      if (implicit) {
        const uint8_t zv = static_cast<uint8_t>(zero[n * step]);
        if (zfill != zv) {
          std::memset(zrow, zv, Cg);
          zfill = zv;
        }
        indirect_block(s, xq, n, g, Cg, zrow, r0, rows, static_cast<const uint8_t**>(buf));
        r.aind = static_cast<const uint8_t* const*>(buf);
        r.taps = s.KH * s.KW;
        r.kgt = Cg / 4;
      } else {
        im2col_block(s, xq, n, g, Cg, zero[n * step], r0, rows, Kp, cfg.a_bytes, buf);
        r.a = buf;
        r.lda = Kp;
      }
      r.out = static_cast<char*>(r.out) + r0 * s.O * osz;
      if (r.residual) r.residual += r0 * r.ldr;
      if (r.residual_u8) r.residual_u8 += r0 * r.ldr;
      run_tiles(r, 0, rows, pi * ppc, std::min(panels, (pi + 1) * ppc));
    }
  });
}

}  // namespace

std::unique_ptr<PackedQ8Conv2d> pack_q8_conv2d(const int8_t* Wq, int64_t O, int64_t KH, int64_t KW, int64_t Cg,
                                              int64_t groups, Isa isa) {
  if (O < 1 || KH < 1 || KW < 1 || Cg < 1 || groups < 1 || O % groups)
    bad("pack_q8_conv2d: bad weight shape or groups");
  auto p = std::make_unique<PackedQ8Conv2d>();
  p->O = O;
  p->KH = KH;
  p->KW = KW;
  p->Cg = Cg;
  p->groups = groups;
  p->isa = isa;
  const int64_t Og = O / groups, K = KH * KW * Cg;
  for (int64_t g = 0; g < groups; ++g) p->group_b.push_back(pack_q8_b(Wq + g * Og * K, Og, K, isa));
  return p;
}

size_t q8_conv2d_workspace(const Conv2dShape& s, int threads) {
  threads = resolve_threads(threads);
  const int64_t Kp = round_up(s.KH * s.KW * (s.C / std::max<int64_t>(s.groups, 1)), 4);
  (void)Kp;
  return align64(static_cast<size_t>(s.N) * s.H * s.W * s.C) + 2 * align64(static_cast<size_t>(s.N) * 4) +
         static_cast<size_t>(threads) * conv_block_bytes(s);
}

void q8_conv2d_dynamic(const Conv2dShape& s, const float* x, const PackedQ8Conv2d& w, const float* w_scale,
                       float* y, const Epilogue& ep, void* workspace, int threads) {
  check_conv(s, w);
  if (!x || !y || !w_scale) bad("q8_conv2d: null operand");
  if (ep.scale) bad("q8_conv2d: Epilogue.scale must be null (w_scale is the per-channel scale)");
  threads = resolve_threads(threads);
  const Q8Config& cfg = config_for(*w.group_b[0]);
  AlignedPtr<char> own;
  if (!workspace) {
    own = aligned_array<char>(q8_conv2d_workspace(s, threads));
    workspace = own.get();
  }
  const ConvWs cw = carve_conv(workspace, s);
  const int64_t img = s.H * s.W * s.C;

  // 1. Per-image range (chunks in parallel), parameters, quantization to u8.
  constexpr int64_t kChunk = 65536;
  const int64_t chunks_per_img = ceil_div(img, kChunk), nchunks = s.N * chunks_per_img;
  std::vector<float> cmin(nchunks), cmax(nchunks);
  auto chunk_range = [&](int64_t c, int64_t* b, int64_t* e) {
    const int64_t n = c / chunks_per_img, i = c % chunks_per_img;
    *b = n * img + i * kChunk;
    *e = n * img + std::min(img, (i + 1) * kChunk);
  };
  parallel_for(nchunks, threads, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t b, e;
      chunk_range(c, &b, &e);
      cfg.minmax(x + b, e - b, &cmin[c], &cmax[c]);
    }
  });
  for (int64_t n = 0; n < s.N; ++n) {
    float mn = 0.f, mx = 0.f;
    for (int64_t i = 0; i < chunks_per_img; ++i) {
      mn = std::min(mn, cmin[n * chunks_per_img + i]);
      mx = std::max(mx, cmax[n * chunks_per_img + i]);
    }
    q8_dynamic_params(mn, mx, &cw.scale[n], &cw.zero[n]);
  }
  parallel_for(nchunks, threads, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t b, e;
      chunk_range(c, &b, &e);
      const int64_t n = c / chunks_per_img;
      cfg.quant_u8(x + b, e - b, 1.f / cw.scale[n], static_cast<float>(cw.zero[n]), cw.xq + b);
    }
  });

  // 2. GEMM per image (and group).
  Run proto;
  proto.kind = Q8Out::F32;
  proto.out = y;
  proto.w_scale = w_scale;
  proto.bias = ep.bias;
  proto.residual = ep.residual;
  proto.ldr = ep.ldr;
  proto.act = ep.act;
  proto.alpha = ep.alpha;
  conv_gemm(s, cw.xq, cw.zero, cw.scale, 1, w, cfg, proto, cw.blocks, cw.block_bytes, threads);
}

size_t q8_conv2d_static_workspace(const Conv2dShape& s, const PackedQ8Conv2d& w, int threads) {
  threads = resolve_threads(threads);
  if (conv_is_direct(s, config_for(*w.group_b[0]))) return 0;
  return static_cast<size_t>(threads) * conv_block_bytes(s);
}

void q8_conv2d_static(const Conv2dShape& s, const uint8_t* xq, float x_scale, int32_t x_zero,
                      const PackedQ8Conv2d& w, const float* w_scale, const Q8StaticEpilogue& ep, void* y,
                      void* workspace, int threads) {
  check_conv(s, w);
  if (!xq || !y || !w_scale) bad("q8_conv2d_static: null operand");
  if (x_zero < 0 || x_zero > 255) bad("q8_conv2d_static: x_zero must be in [0, 255]");
  if ((ep.residual || ep.residual_u8) && ep.ldr < s.O) bad("q8_conv2d_static: residual ldr < O");
  threads = resolve_threads(threads);
  const Q8Config& cfg = config_for(*w.group_b[0]);
  AlignedPtr<char> own;
  const size_t need = q8_conv2d_static_workspace(s, w, threads);
  if (!workspace && need) {
    own = aligned_array<char>(need);
    workspace = own.get();
  }
  Run proto;
  set_static_epilogue(proto, ep, "q8_conv2d_static");
  proto.out = y;
  proto.w_scale = w_scale;
  conv_gemm(s, xq, &x_zero, &x_scale, 0, w, cfg, proto, static_cast<char*>(workspace), conv_block_bytes(s),
            threads);
}

}  // namespace slimrt::kernels

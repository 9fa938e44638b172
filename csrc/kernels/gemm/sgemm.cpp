// fp32 GEMM driver (baseline x86-64): packing, blocking, threading and the
// scalar reference path. The per-ISA microkernels live in sgemm_<isa>.cpp.
//
// Blocking of the packed path, per task = (row block, panel range):
//   for each K block (kc <= kKcMax, or all of K when M x K fits one A block;
//                     fixed by M and K, never by the thread count):
//     pack A[row block][K block] into [tiles][kc][MR]          (L2 resident)
//       (or read it from the job's shared packed A, see below; a row-major A with
//        N <= kDirectMaxN is not packed: the microkernel reads its rows in place)
//     for each column sub-chunk of the range (its K-block slice of B <= 64 KB, L2):
//       for each MR-row tile:                                   (A tile in L1)
//         for each panel of the sub-chunk: ukernel -> C tile    (accumulates over K
//                                                    blocks, epilogue on the last one)
//   With long K a sub-chunk is one panel (the BLIS order: panel slice in L1, A
//   tiles from L2); with short K (1x1 convolutions: M = pixels, K = channels) the
//   tiles sweep all the columns, so C is written a tile of full rows at a time.
// Threads: tall A is split by row blocks only; short A by row blocks x panel
// chunks, and then A is packed once per job up front (pack tasks) and shared by
// the chunks instead of being packed again by each. A thread claims its next task
// before running the current one, so an A read from DRAM (one K block, >= 2 MB,
// K >= 64) is prefetched a row block ahead. An output of >= 8 MB written once
// goes through a tile buffer and streaming stores (no read-for-ownership).
// None of this changes an element's summation order: results do not depend on
// the thread count.
// M == 1 uses the gemv kernel instead (full K per panel, split over panels).
#include "kernels/gemm/sgemm.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <xmmintrin.h>  // SSE streaming stores (baseline x86-64)
#include <string>
#include <vector>

#include "core/threadpool.h"
#include "kernels/gemm/gemm_driver.h"
#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels {
namespace {

using detail::GemmJob;
using detail::UkEpilogue;

constexpr int64_t kKcMax = 256;             // K block (floats)
constexpr int64_t kABlockBytes = 192 << 10;  // packed A block budget (L2)
constexpr int64_t kMinTaskFlops = 1 << 17;   // below this, one thread does the work
constexpr int64_t kNextPanelPrefetch = 16 << 10;  // bytes of the next panel slice fetched ahead
constexpr int64_t kBSubChunkBytes = 64 << 10;     // B slice (K block x sub-chunk) swept by each row tile
constexpr int64_t kMaxSubChunkCols = 1024;        // ... and at most this many columns
constexpr int64_t kPrefetchABytes = int64_t{2} << 20;  // an A this big (> L2) is prefetched a block ahead
constexpr int64_t kSharedABytes = 4 << 20;        // packed A shared by a job's panel chunks, at most
constexpr int64_t kDirectMaxN = 256;              // A read in place (not packed) up to this N

const detail::SgemmKernels* kernels_for(Isa isa) {
  static const detail::SgemmKernels k_avx2{detail::avx2::kMR, detail::avx2::kNR, detail::avx2::f32_gemm_ukernel,
                                           detail::avx2::f32_gemm_ukernel_a, detail::avx2::f32_gemv_panels,
                                           detail::avx2::f32_act_inplace, detail::avx2::f32_pack_rows};
  static const detail::SgemmKernels k_avx512{detail::avx512::kMR, detail::avx512::kNR,
                                             detail::avx512::f32_gemm_ukernel, detail::avx512::f32_gemm_ukernel_a,
                                             detail::avx512::f32_gemv_panels,
                                             detail::avx512::f32_act_inplace, detail::avx512::f32_pack_rows};
  if (isa >= Isa::Avx512) return &k_avx512;
  if (isa == Isa::Avx2) return &k_avx2;
  return nullptr;
}

int panel_width(Isa isa) {
  const detail::SgemmKernels* k = kernels_for(isa);
  return k ? k->nr : detail::scalar::kNR;
}

void check_isa(Isa isa) {
  if (static_cast<int>(isa) < 0 || static_cast<int>(isa) > static_cast<int>(Isa::Amx))
    fail(Code::InvalidArgument, "sgemm: unknown ISA");
  if (!isa_supported(isa))
    fail(Code::Unsupported, std::string("sgemm: ISA ") + isa_name(isa) + " is not supported by this CPU");
}

int clamp_threads(int threads) { return threads <= 0 ? default_threads() : threads; }

std::unique_ptr<PackedSgemmB> alloc_packed(int64_t N, int64_t K, Isa isa) {
  if (N < 0 || K < 0) fail(Code::InvalidArgument, "pack_sgemm_b: negative size");
  check_isa(isa);
  auto p = std::make_unique<PackedSgemmB>();
  p->N = N;
  p->K = K;
  p->isa = isa;
  p->nr = panel_width(isa);
  p->panels = (N + p->nr - 1) / p->nr;
  uint64_t count = 0;
  if (mul_overflow_u64(static_cast<uint64_t>(p->panels) * p->nr, static_cast<uint64_t>(K), &count) ||
      count > (uint64_t{1} << 40))
    fail(Code::InvalidArgument, "pack_sgemm_b: matrix too large");
  p->data = aligned_array<float>(std::max<uint64_t>(count, 1));
  return p;
}

// Packs panels [p0, p1) from W[N][K] (rows ldw apart): dst[k][j] = W[p*nr + j][k].
void pack_nk_panels(PackedSgemmB& P, const float* W, int64_t ldw, int64_t p0, int64_t p1) {
  const int nr = P.nr;
  const int64_t K = P.K;
  for (int64_t p = p0; p < p1; ++p) {
    float* dst = P.data.get() + p * K * nr;
    const int64_t n0 = p * nr, ncols = std::min<int64_t>(nr, P.N - n0);
    constexpr int64_t kStep = 16;  // read 16 consecutive k of each row, write 16 panel rows
    for (int64_t k0 = 0; k0 < K; k0 += kStep) {
      const int64_t kn = std::min(kStep, K - k0);
      for (int64_t j = 0; j < ncols; ++j) {
        const float* src = W + (n0 + j) * ldw + k0;
        for (int64_t k = 0; k < kn; ++k) dst[(k0 + k) * nr + j] = src[k];
      }
      for (int64_t j = ncols; j < nr; ++j)
        for (int64_t k = 0; k < kn; ++k) dst[(k0 + k) * nr + j] = 0.f;
    }
  }
}

// Software prefetch (locality L: 3 = L1, 2 = L2) of kc floats of each of `rows` rows, lda apart.
template <int L>
void prefetch_rows(const float* a, int64_t lda, int64_t rows, int64_t kc) {
  for (int64_t r = 0; r < rows; ++r) {
    const char* p = reinterpret_cast<const char*>(a + r * lda);
    const char* e = reinterpret_cast<const char*>(a + r * lda + kc);
    for (p = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63}); p < e; p += 64)
      __builtin_prefetch(p, 0, L);
  }
}

struct ABuffer {
  AlignedPtr<float> p;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      p = aligned_array<float>(n);
      cap = n;
    }
    return p.get();
  }
};

float* thread_a_buffer(size_t n) {
  static thread_local ABuffer buf;
  return buf.get(n);
}

// Reference path: plain loops over the packed panels (float accumulation in k order,
// then the epilogue in float and the activation in double).
void sgemm_scalar(int64_t M, const float* A, int64_t lda, const PackedSgemmB& B, float* C, int64_t ldc,
                  const Epilogue& ep, int threads) {
  const int nr = B.nr;
  const int64_t K = B.K, N = B.N, np = B.panels;
  const int64_t work = M * np;
  const int64_t grain = std::max<int64_t>(1, kMinTaskFlops / std::max<int64_t>(1, 2 * K * nr));
  parallel_for(work, threads, grain, [&](int64_t w0, int64_t w1) {
    float acc[detail::scalar::kNR];
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t m = w / np, p = w % np;
      const float* a = A + m * lda;
      const float* b = B.data.get() + p * K * nr;
      for (int j = 0; j < nr; ++j) acc[j] = 0.f;
      for (int64_t k = 0; k < K; ++k)
        for (int j = 0; j < nr; ++j) acc[j] += a[k] * b[k * nr + j];
      const int64_t n0 = p * nr, ncols = std::min<int64_t>(nr, N - n0);
      float* c = C + m * ldc + n0;
      for (int64_t j = 0; j < ncols; ++j) {
        float x = acc[j];
        if (ep.scale) x *= ep.scale[n0 + j];
        if (ep.bias) x += ep.bias[n0 + j];
        if (ep.residual) x += ep.residual[m * ep.ldr + n0 + j];
        c[j] = x;
      }
      detail::scalar::f32_act_inplace(c, ncols, ep.act, ep.alpha);
    }
  });
}

UkEpilogue base_epilogue(const Epilogue& ep, bool residual_is_c) {
  UkEpilogue e;
  e.bias = ep.bias;
  e.scale = ep.scale;
  e.residual = residual_is_c ? nullptr : ep.residual;
  e.ldr = ep.ldr;
  e.act = ep.act;
  e.alpha = ep.alpha;
  e.accumulate = residual_is_c;
  e.last = true;
  return e;
}

// M == 1: panels in groups of kGemvGroup (the gemv kernels' stream count), split over threads;
// group boundaries do not depend on the thread count, so neither do the results.
constexpr int64_t kGemvGroup = 4;
// Packed B at least this big streams from DRAM on the development CPU (Zen 4, 32 MB L3); the
// GEMV then splits into several chunks per thread. A constant, not read from cpuid.
constexpr int64_t kGemvDramBytes = int64_t{24} << 20;

void sgemm_gemv(const detail::SgemmKernels& kr, const float* A, const PackedSgemmB& B, float* C,
                const Epilogue& ep, bool residual_is_c, int threads) {
  const int64_t K = B.K, N = B.N, np = B.panels, nr = kr.nr;
  const int64_t ngroups = (np + kGemvGroup - 1) / kGemvGroup;
  const int64_t group_flops = 2 * std::max<int64_t>(1, K) * nr * kGemvGroup;
  const bool dram = np * K * nr * static_cast<int64_t>(sizeof(float)) >= kGemvDramBytes;
  // Cache-resident weights: one chunk per thread (the caller starts on chunk 0, so on 2 cores each
  // core reads the same half on every call, from its own L2; K=N=512 at 2 threads: 17.8 us on one
  // thread -> 9.6-10.3 us; 1024^2 31.9 -> 29.7 us against 4 chunks per thread). From DRAM:
  // several chunks per thread, so a late worker does not hold the caller up.
  const int64_t chunks = std::min<int64_t>(ngroups, dram && threads > 1 ? 4 * threads : threads);
  const int64_t per = std::max<int64_t>((ngroups + chunks - 1) / chunks,
                                        (kMinTaskFlops + group_flops - 1) / group_flops);
  const int64_t ntasks = (ngroups + per - 1) / per;
  ThreadPool::global().run(ntasks, threads, [&](int64_t t) {
    const int64_t p0 = t * per * kGemvGroup, p1 = std::min(np, p0 + per * kGemvGroup);
    if (p0 >= p1) return;
    UkEpilogue e = base_epilogue(ep, residual_is_c);
    const int64_t n0 = p0 * nr;
    if (e.bias) e.bias += n0;
    if (e.scale) e.scale += n0;
    if (e.residual) e.residual += n0;
    const int64_t last_ncols = std::min<int64_t>(nr, N - (p1 - 1) * nr);
    kr.gemv(K, A, B.data.get() + p0 * K * nr, p1 - p0, last_ncols, C + n0, e);
  });
}

// Row/panel split of one job.
struct JobPlan {
  int64_t nkb, kc, mb, mc, ns, ps, ntasks;
  int64_t pc;            // panels per column sub-chunk (row tiles sweep a sub-chunk's panels)
  bool shared = false;   // A packed once per job (pre-pass) and read by every panel chunk
  int64_t a_off = 0;     // the job's offset in the shared packed-A buffer (floats)
  bool stream = false;   // C written through a tile buffer with streaming stores
  bool prefetch = false; // the next row block's A is prefetched while this one computes
  bool direct = false;   // the microkernel reads A in place (no packing)
};

JobPlan plan_job(const GemmJob& j, int mr, int nr, int threads, int64_t njobs) {
  JobPlan p;
  const int64_t K = j.B->K, np = j.B->panels, M = j.M;
  // K blocks depend on M and K only, so results do not depend on the thread count.
  // When all of A fits one packed block (small M), K is not blocked: each panel then
  // streams contiguously, which is what bandwidth-bound small-M shapes need.
  const bool whole_k = M * K * static_cast<int64_t>(sizeof(float)) <= kABlockBytes;
  p.nkb = whole_k ? 1 : std::max<int64_t>(1, (K + kKcMax - 1) / kKcMax);
  p.kc = (K + p.nkb - 1) / p.nkb;
  const int64_t kc1 = std::max<int64_t>(p.kc, 1);
  // Row blocks: as tall as the A budget allows, balanced, a multiple of MR.
  const int64_t mc_max = std::max<int64_t>(mr, kABlockBytes / (4 * kc1) / mr * mr);
  p.mb = (M + mc_max - 1) / mc_max;
  p.mc = ((M + p.mb - 1) / p.mb + mr - 1) / mr * mr;
  // Panel chunks: enough tasks for the threads to balance, chunks of >= ~128 columns.
  // Tall A (several row blocks per thread) is split by rows only: splitting columns too
  // would pack the same rows once per chunk.
  p.ns = 1;
  if (threads > 1 && p.mb * njobs < 2 * threads) {
    const int64_t want = (4 * threads + p.mb * njobs - 1) / (p.mb * njobs);
    const int64_t max_ns = std::max<int64_t>(1, np / std::max<int64_t>(1, 128 / nr));
    p.ns = std::max<int64_t>(1, std::min(want, max_ns));
    if (p.mb * p.ns * njobs < threads) p.ns = std::min(np, (threads + p.mb * njobs - 1) / (p.mb * njobs));
    // One row block: chunks in a multiple of the thread count, or one thread runs a chunk more
    // than the other (Xception's 64 x 384 x 384 layers, 2 threads: 3 chunks of 4 panels ran at
    // 1.2x one thread).
    if (p.mb * njobs == 1 && p.ns > threads) p.ns = p.ns / threads * threads;
  }
  p.ps = (np + p.ns - 1) / p.ns;  // panels per chunk
  p.ns = (np + p.ps - 1) / p.ps;
  p.ntasks = p.mb * p.ns;
  // Column sub-chunks: as many panels as keep their K-block slice of B in L2 (row tiles then
  // sweep them with their A tile in L1, writing C a tile of rows by the sub-chunk's width at a
  // time); at least one panel (the BLIS order: each panel slice in L1, A from L2).
  p.pc = std::max<int64_t>(1, std::min({p.ps, kBSubChunkBytes / (4 * kc1 * nr), kMaxSubChunkCols / nr}));
  // The packed A block must fit one workspace slot (kc <= kKcMax and mr <= 192, or all of A fits).
  if (p.mc * kc1 * 4 > kABlockBytes) fail(Code::Internal, "sgemm: A block too large");
  // A row-major A is read in place by the microkernel rather than packed when N is small: packing
  // costs about one transposing copy per element of A against N / 16 FMAs per element (in-process
  // A/B, AVX-512: N = 24..32 1.16-1.19x, N = 96..256 1.02-1.07x; N >= 576 0.93-0.96x, where the
  // tile's rows, re-read in place for every column sub-chunk, cost more than the packed copy).
  // Not when rows are a multiple of 4 KB apart: a tile's rows would then share one L1 set.
  p.direct = j.rows && j.B->N <= kDirectMaxN && (j.rows->lda * static_cast<int64_t>(sizeof(float))) % 4096 != 0;
  // An output far bigger than the caches, written once (one K block, no C accumulation):
  // streaming stores save the read-for-ownership of each of its lines.
  p.stream = p.nkb == 1 && !j.residual_is_c &&
             (j.ep.stream || M * j.B->N * static_cast<int64_t>(sizeof(float)) >= kStreamOutputBytes);
  // Likewise an A that big comes from DRAM. The packer reads MR rows at once, interleaved line
  // streams that the hardware prefetchers miss once rows span several lines (K >= 64), so
  // with one K block (A read once per row block) the next row block is fetched in software.
  p.prefetch = j.prefetch_a && p.nkb == 1 && p.ns == 1 && K >= 64 &&
               M * K * static_cast<int64_t>(sizeof(float)) >= kPrefetchABytes;
  return p;
}

// Writes rows x cols of the tile buffer t (rows ldt apart) to c (rows ldc apart) with streaming
// stores where 16-byte aligned (SSE: baseline x86-64), plain stores at unaligned ends.
void stream_tile(const float* t, int64_t ldt, float* c, int64_t ldc, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = t + r * ldt;
    float* dst = c + r * ldc;
    int64_t j = 0;
    while (j < cols && (reinterpret_cast<uintptr_t>(dst + j) & 15)) {
      dst[j] = src[j];
      ++j;
    }
    for (; j + 4 <= cols; j += 4) _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
    for (; j < cols; ++j) dst[j] = src[j];
  }
}

// Floats of the tile buffer of the streaming path: MR rows of a sub-chunk.
constexpr int64_t kTileBufFloats = detail::kMaxMR * kMaxSubChunkCols;

// next_task: the task of the same job this thread runs next (claimed ahead), or -1.
void run_task(const detail::SgemmKernels& kr, const GemmJob& j, const JobPlan& pl, int64_t task, float* abuf,
              const float* shared_a, float* tbuf, int64_t next_task) {
  const int mr = kr.mr, nr = kr.nr;
  const int64_t K = j.B->K, N = j.B->N, np = j.B->panels;
  const int64_t ib = task / pl.ns, jb = task % pl.ns;
  const int64_t m0 = ib * pl.mc, rows = std::min(pl.mc, j.M - m0);
  const int64_t p0 = jb * pl.ps, p1 = std::min(np, p0 + pl.ps);
  if (rows <= 0 || p0 >= p1) return;
  const int64_t ntiles = (rows + mr - 1) / mr;
  // Short K (one K block) reads A once per row block: while this block computes, the rows of
  // this thread's next task are fetched, so an A that comes from DRAM (a big batch) streams
  // in behind the arithmetic instead of stalling the packer.
  const int64_t next_m0 = next_task >= 0 ? next_task / pl.ns * pl.mc : 0;
  // This task's share of the caller's prefetch range (Epilogue::prefetch), a slice per row tile.
  const char* pf = nullptr;
  int64_t pf_bytes = 0;
  if (j.ep.prefetch && j.ep.prefetch_bytes > 0) {
    const int64_t b0 = j.ep.prefetch_bytes * task / pl.ntasks, b1 = j.ep.prefetch_bytes * (task + 1) / pl.ntasks;
    pf = static_cast<const char*>(j.ep.prefetch) + b0;
    pf_bytes = b1 - b0;
  }
  const int64_t next_rows = pl.prefetch && next_task >= 0 ? std::min(pl.mc, j.M - next_m0) : 0;
  for (int64_t kb = 0; kb < pl.nkb; ++kb) {
    const int64_t k0 = kb * pl.kc, kcur = std::max<int64_t>(0, std::min(pl.kc, K - k0));
    const float* ap = abuf;
    if (pl.direct) ap = nullptr;
    else if (shared_a) ap = shared_a + pl.a_off + (ib * pl.nkb + kb) * pl.mc * pl.kc;
    else j.pack_a(j.a_ctx, m0, rows, k0, kcur, mr, abuf);
    UkEpilogue e = base_epilogue(j.ep, j.residual_is_c);
    e.accumulate = kb > 0 || j.residual_is_c;
    e.last = kb + 1 == pl.nkb;
    for (int64_t q0 = p0; q0 < p1; q0 += pl.pc) {
      const int64_t q1 = std::min(p1, q0 + pl.pc);
      const int64_t cn0 = q0 * nr, cw = std::min<int64_t>(N, q1 * nr) - cn0;  // the sub-chunk's columns
      for (int64_t t = 0; t < ntiles; ++t) {
        const int64_t r0 = m0 + t * mr, r_n = std::min<int64_t>(mr, j.M - r0);
        if (q0 == p0 && next_rows > 0) {
          const int64_t f0 = t * next_rows / ntiles, f1 = (t + 1) * next_rows / ntiles;
          if (f1 > f0) j.prefetch_a(j.a_ctx, next_m0 + f0, f1 - f0, k0, kcur);
        }
        if (pl.direct && q0 == p0 && t + 1 < ntiles) {
          // A read in place: fetch the next tile's rows into L1 while this tile computes (its
          // short rows are too many interleaved streams for the L1 prefetcher).
          const int64_t n_r = std::min<int64_t>(mr, j.M - r0 - mr);
          prefetch_rows<3>(j.rows->a + (r0 + mr) * j.rows->lda + k0, j.rows->lda, n_r, kcur);
        }
        if (pf && kb == 0 && q0 == p0) prefetch_slice(pf, pf_bytes, t, ntiles);
        if (e.last && e.residual && t + 1 < ntiles)
          prefetch_rows<2>(e.residual + (r0 + mr) * j.ep.ldr + cn0, j.ep.ldr,
                           std::min<int64_t>(mr, j.M - r0 - mr), cw);
        float* ct = pl.stream ? tbuf : j.C + r0 * j.ldc + cn0;
        const int64_t ldt = pl.stream ? pl.pc * nr : j.ldc;
        for (int64_t p = q0; p < q1; ++p) {
          const int64_t n0 = p * nr, ncols = std::min<int64_t>(nr, N - n0);
          const float* bp = j.B->data.get() + p * K * nr + k0 * nr;
          if (pl.pc == 1 && p + 1 < p1 && t == 0) {
            // The next panel's slice is K*NR floats away: fetch it into L2 while this one runs,
            // so that small-M (bandwidth-bound) shapes do not start every panel from DRAM.
            const char* next = reinterpret_cast<const char*>(bp + K * nr);
            const int64_t bytes = std::min<int64_t>(kcur * nr * static_cast<int64_t>(sizeof(float)), kNextPanelPrefetch);
            for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(next + off, 0, 2);
          }
          UkEpilogue et = e;
          if (et.bias) et.bias += n0;
          if (et.scale) et.scale += n0;
          if (et.residual) et.residual += r0 * j.ep.ldr + n0;
          if (pl.direct)
            kr.ukernel_a(r_n, kcur, j.rows->a + r0 * j.rows->lda + k0, j.rows->lda, bp, ct + (n0 - cn0), ldt,
                         ncols, et);
          else
            kr.ukernel(r_n, kcur, ap + t * kcur * mr, bp, ct + (n0 - cn0), ldt, ncols, et);
        }
        if (pl.stream) stream_tile(tbuf, ldt, j.C + r0 * j.ldc + cn0, j.ldc, r_n, cw);
      }
    }
  }
  if (pl.stream) _mm_sfence();
}

bool ranges_overlap(const float* a, int64_t rows_a, int64_t ld_a, const float* b, int64_t rows_b, int64_t ld_b,
                    int64_t cols) {
  const float* a_end = a + (rows_a - 1) * ld_a + cols;
  const float* b_end = b + (rows_b - 1) * ld_b + cols;
  return a < b_end && b < a_end;
}

}  // namespace

namespace detail {

size_t gemm_workspace_bytes(int threads) {
  return static_cast<size_t>(std::max(1, clamp_threads(threads))) * kABlockBytes;
}

static_assert(avx2::kMR <= kMaxMR && avx512::kMR <= kMaxMR, "raise kMaxMR");

PackRowsFn pack_rows_for(Isa isa) {
  const SgemmKernels* k = kernels_for(isa);
  if (!k) fail(Code::Internal, "pack_rows_for: no packed kernel for this ISA");
  return k->pack_rows;
}

const float* zeros_for_packing(int64_t len) {
  // A K block is at most kKcMax floats, or all of K when M*K floats fit one A slot.
  static const float zeros[kABlockBytes / sizeof(float)] = {};
  if (len > static_cast<int64_t>(kABlockBytes / sizeof(float)))
    fail(Code::Internal, "packing: segment longer than a K block");
  return zeros;
}

void pack_a_rows(const void* ctx, int64_t m0, int64_t rows, int64_t k0, int64_t kc, int mr, float* dst) {
  const RowMajorA& A = *static_cast<const RowMajorA*>(ctx);
  const float* src[kMaxMR];
  for (int64_t t = 0; t * mr < rows; ++t) {
    const int r_n = static_cast<int>(std::min<int64_t>(mr, rows - t * mr));
    for (int r = 0; r < r_n; ++r) src[r] = A.a + (m0 + t * mr + r) * A.lda + k0;
    A.pack_rows(src, r_n, kc, dst + t * kc * mr, mr);
  }
}

void prefetch_a_rows(const void* ctx, int64_t m0, int64_t rows, int64_t k0, int64_t kc) {
  const RowMajorA& A = *static_cast<const RowMajorA*>(ctx);
  prefetch_rows<2>(A.a + m0 * A.lda + k0, A.lda, rows, kc);
}

void set_row_major_a(GemmJob& j, const RowMajorA& a) {
  j.a_ctx = &a;
  j.pack_a = pack_a_rows;
  j.prefetch_a = prefetch_a_rows;
  j.rows = &a;
}

bool check_residual(const Epilogue& ep, int64_t M, int64_t N, const float* C, int64_t ldc) {
  if (!ep.residual || M <= 0 || N <= 0) return false;
  if (M > 1 && ep.ldr < N) fail(Code::InvalidArgument, "gemm: residual ldr < N");
  if (ep.residual == C && (M == 1 || ep.ldr == ldc)) {
    if (ep.scale) fail(Code::InvalidArgument, "gemm: a residual aliasing the output needs scale == null");
    return true;
  }
  if (ranges_overlap(ep.residual, M, ep.ldr, C, M, ldc, N))
    fail(Code::InvalidArgument, "gemm: residual overlaps the output");
  return false;
}

const SgemmKernels* sgemm_kernels(Isa isa) { return kernels_for(isa); }

void run_gemm_jobs(const GemmJob* jobs, int64_t njobs, void* workspace, int threads) {
  if (njobs <= 0) return;
  const detail::SgemmKernels* kr = kernels_for(jobs[0].B->isa);
  if (!kr) fail(Code::Internal, "run_gemm_jobs: no packed kernel for this ISA");
  threads = std::max(1, clamp_threads(threads));
  double flops = 0;
  for (int64_t i = 0; i < njobs; ++i) flops += 2.0 * jobs[i].M * jobs[i].B->N * std::max<int64_t>(1, jobs[i].B->K);
  if (flops < kMinTaskFlops * 2.0) threads = 1;
  std::vector<JobPlan> plans(njobs);
  std::vector<int64_t> first(njobs + 1, 0);
  // Jobs whose panel chunks would each pack the same rows of A get it packed once, up front,
  // into one shared buffer (as long as it stays small); pack tasks = (job, row block, K block).
  int64_t shared_floats = 0;
  std::vector<int64_t> pack_first(njobs + 1, 0);
  for (int64_t i = 0; i < njobs; ++i) {
    if (kernels_for(jobs[i].B->isa) != kr) fail(Code::Internal, "run_gemm_jobs: mixed ISAs");
    JobPlan& pl = plans[i];
    pl = jobs[i].M > 0 && jobs[i].B->N > 0 ? plan_job(jobs[i], kr->mr, kr->nr, threads, njobs) : JobPlan{};
    first[i + 1] = first[i] + pl.ntasks;
    const int64_t floats = pl.mb * pl.nkb * pl.mc * pl.kc;
    if (pl.ns > 1 && pl.ntasks > 0 && !pl.direct && (shared_floats + floats) * 4 <= kSharedABytes) {
      pl.shared = true;
      pl.a_off = shared_floats;
      shared_floats += floats;
    }
    pack_first[i + 1] = pack_first[i] + (pl.shared ? pl.mb * pl.nkb : 0);
  }
  const int64_t ntasks = first[njobs];
  if (ntasks == 0) return;
  float* shared_a = nullptr;
  if (shared_floats > 0) {
    static thread_local ABuffer shared_buf;  // the caller's: tasks only read it
    shared_a = shared_buf.get(static_cast<size_t>(shared_floats));
    const int64_t npack = pack_first[njobs];
    ThreadPool::global().run(npack, threads, [&](int64_t t) {
      int64_t i = 0;
      while (pack_first[i + 1] <= t) ++i;
      const GemmJob& j = jobs[i];
      const JobPlan& pl = plans[i];
      const int64_t ib = (t - pack_first[i]) / pl.nkb, kb = (t - pack_first[i]) % pl.nkb;
      const int64_t m0 = ib * pl.mc, k0 = kb * pl.kc;
      const int64_t rows = std::min(pl.mc, j.M - m0), kcur = std::max<int64_t>(0, std::min(pl.kc, j.B->K - k0));
      j.pack_a(j.a_ctx, m0, rows, k0, kcur, kr->mr, shared_a + pl.a_off + (ib * pl.nkb + kb) * pl.mc * pl.kc);
    });
  }
  bool any_stream = false, any_prefetch = false;
  for (const JobPlan& pl : plans) {
    any_stream = any_stream || pl.stream;
    any_prefetch = any_prefetch || pl.prefetch;
  }
  const int workers = static_cast<int>(std::min<int64_t>(threads, ntasks));
  std::atomic<int64_t> next{0};
  // Each worker slot w owns workspace slice w and claims tasks until none are left.
  ThreadPool::global().run(workers, workers, [&](int64_t w) {
    float* abuf = workspace ? reinterpret_cast<float*>(static_cast<char*>(workspace) + w * kABlockBytes)
                            : thread_a_buffer(kABlockBytes / sizeof(float));
    static thread_local ABuffer tile_buf;
    float* tbuf = any_stream ? tile_buf.get(kTileBufFloats) : nullptr;
    int64_t job = 0;
    // With prefetching, each task's successor is claimed before it runs, so that run_task
    // can fetch its A (otherwise a task is claimed only when a thread is free to run it).
    int64_t t = next.fetch_add(1, std::memory_order_relaxed);
    while (t < ntasks) {
      const int64_t tn = any_prefetch ? next.fetch_add(1, std::memory_order_relaxed) : ntasks;
      while (first[job + 1] <= t) ++job;
      const int64_t tn_local = tn < first[job + 1] ? tn - first[job] : -1;
      run_task(*kr, jobs[job], plans[job], t - first[job], abuf, plans[job].shared ? shared_a : nullptr, tbuf,
               tn_local);
      t = any_prefetch ? tn : next.fetch_add(1, std::memory_order_relaxed);
    }
  });
}

}  // namespace detail

std::unique_ptr<PackedSgemmB> pack_sgemm_b_nk(const float* W, int64_t N, int64_t K, int64_t ldw, Isa isa,
                                              int threads) {
  if (ldw < K) fail(Code::InvalidArgument, "pack_sgemm_b: ldw < K");
  auto P = alloc_packed(N, K, isa);
  if (N > 0 && K > 0 && !W) fail(Code::InvalidArgument, "pack_sgemm_b: null weights");
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, K * P->nr));
  parallel_for(P->panels, clamp_threads(threads), grain,
               [&](int64_t p0, int64_t p1) { pack_nk_panels(*P, W, ldw, p0, p1); });
  return P;
}

std::unique_ptr<PackedSgemmB> pack_sgemm_b(const float* W, int64_t N, int64_t K, Isa isa) {
  return pack_sgemm_b_nk(W, N, K, K, isa, 1);
}

std::unique_ptr<PackedSgemmB> pack_sgemm_b_kn(const float* B, int64_t K, int64_t N, int64_t ldb, Isa isa,
                                              int threads) {
  if (ldb < N) fail(Code::InvalidArgument, "pack_sgemm_b_kn: ldb < N");
  auto P = alloc_packed(N, K, isa);
  if (N > 0 && K > 0 && !B) fail(Code::InvalidArgument, "pack_sgemm_b_kn: null matrix");
  const int nr = P->nr;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, K * nr));
  parallel_for(P->panels, clamp_threads(threads), grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* dst = P->data.get() + p * K * nr;
      const int64_t n0 = p * nr, ncols = std::min<int64_t>(nr, N - n0);
      for (int64_t k = 0; k < K; ++k) {
        std::memcpy(dst + k * nr, B + k * ldb + n0, sizeof(float) * ncols);
        for (int64_t j = ncols; j < nr; ++j) dst[k * nr + j] = 0.f;
      }
    }
  });
  return P;
}

void sgemm(int64_t M, const float* A, int64_t lda, const PackedSgemmB& B, float* C, int64_t ldc,
           const Epilogue& ep, int threads) {
  const int64_t N = B.N, K = B.K;
  if (M < 0) fail(Code::InvalidArgument, "sgemm: negative M");
  if (M == 0 || N == 0) return;
  check_isa(B.isa);
  if (B.nr != panel_width(B.isa) || !B.data) fail(Code::InvalidArgument, "sgemm: malformed packed B");
  if (!C || (K > 0 && !A)) fail(Code::InvalidArgument, "sgemm: null pointer");
  if ((M > 1 && lda < K) || lda < 0) fail(Code::InvalidArgument, "sgemm: lda < K");
  if ((M > 1 && ldc < N) || ldc < 0) fail(Code::InvalidArgument, "sgemm: ldc < N");
  if (static_cast<int>(ep.act) < 0 || static_cast<int>(ep.act) >= kNumActs)
    fail(Code::InvalidArgument, "sgemm: unknown activation");
  if (K > 0) {
    const float* a_end = A + (M - 1) * lda + K;
    const float* c_end = C + (M - 1) * ldc + N;
    if (A < c_end && C < a_end) fail(Code::InvalidArgument, "sgemm: the output overlaps A");
  }
  const bool residual_is_c = detail::check_residual(ep, M, N, C, ldc);
  threads = clamp_threads(threads);
  const detail::SgemmKernels* kr = kernels_for(B.isa);
  if (!kr) {
    sgemm_scalar(M, A, lda, B, C, ldc, ep, threads);
  } else if (M == 1) {
    sgemm_gemv(*kr, A, B, C, ep, residual_is_c, threads);
  } else {
    detail::RowMajorA a{A, lda, kr->pack_rows};
    detail::GemmJob job;
    job.M = M;
    detail::set_row_major_a(job, a);
    job.B = &B;
    job.C = C;
    job.ldc = ldc;
    job.ep = ep;
    job.residual_is_c = residual_is_c;
    detail::run_gemm_jobs(&job, 1, nullptr, threads);
  }
}

void sgemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
              bool trans_b, float* C, int64_t ldc, const Epilogue& ep, Isa isa, int threads) {
  if (M < 0 || N < 0 || K < 0) fail(Code::InvalidArgument, "sgemm_nn: negative size");
  if (M == 0 || N == 0) return;
  std::unique_ptr<PackedSgemmB> P = trans_b ? pack_sgemm_b_nk(B, N, K, ldb, isa, threads)
                                            : pack_sgemm_b_kn(B, K, N, ldb, isa, threads);
  sgemm(M, A, lda, *P, C, ldc, ep, threads);
}

}  // namespace slimrt::kernels

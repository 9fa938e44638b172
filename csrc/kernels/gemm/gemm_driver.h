// The blocked fp32 GEMM driver shared by sgemm and conv2d (baseline files only:
// never include this from an ISA-suffixed file).
//
// A is "virtual": the driver asks a packer for each (row block, K block) and the
// packer writes it in the microkernel's layout [tiles][kc][mr]. sgemm's packer
// copies rows of a matrix; conv2d's packer gathers im2col rows from NHWC input,
// so no im2col matrix is ever built.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/act.h"
#include "kernels/gemm/sgemm.h"
#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels::detail {

// Writes rows [m0, m0+rows) x columns [k0, k0+kc) of A to dst as [tiles][kc][mr]
// (element (r, k) of tile t at dst[t*kc*mr + k*mr + r]).
using PackAFn = void (*)(const void* ctx, int64_t m0, int64_t rows, int64_t k0, int64_t kc, int mr,
                         float* dst);

// Fetches (software prefetch, no stores) the source of rows [m0, m0+rows) x columns
// [k0, k0+kc) of A towards the cache, ahead of pack_a's call for them. Optional.
using PrefetchAFn = void (*)(const void* ctx, int64_t m0, int64_t rows, int64_t k0, int64_t kc);

struct RowMajorA;

struct GemmJob {
  int64_t M = 0;
  const void* a_ctx = nullptr;
  PackAFn pack_a = nullptr;
  PrefetchAFn prefetch_a = nullptr;
  const RowMajorA* rows = nullptr;  // A as a row-major matrix, when it is one (set_row_major_a): the
                                   // driver may then read it in place instead of packing it
  const PackedSgemmB* B = nullptr;  // N, K, ISA (must not be the scalar ISA)
  float* C = nullptr;
  int64_t ldc = 0;
  Epilogue ep;               // bias/scale/residual already offset for this job
  bool residual_is_c = false;  // ep.residual == C: accumulate into C, ep.residual ignored
};

// Bytes of workspace run_gemm_jobs needs for `threads` threads (packed-A blocks).
size_t gemm_workspace_bytes(int threads);

// Runs all jobs on up to `threads` threads. workspace: gemm_workspace_bytes(threads)
// bytes, 64-byte aligned, or null (then per-thread buffers are used).
void run_gemm_jobs(const GemmJob* jobs, int64_t njobs, void* workspace, int threads);

constexpr int kMaxMR = 16;  // upper bound on any microkernel's MR

// The fp32 microkernels of `isa` (null for the scalar ISA).
const SgemmKernels* sgemm_kernels(Isa isa);
// The packed-panel transpose of the ISA the job runs on (kernels for `isa`).
PackRowsFn pack_rows_for(Isa isa);
// A zero segment of `len` floats (len <= the K block) for padded im2col taps.
const float* zeros_for_packing(int64_t len);

// Packs a row-major matrix (ctx points to a RowMajorA).
struct RowMajorA {
  const float* a;
  int64_t lda;
  PackRowsFn pack_rows;
};
void pack_a_rows(const void* ctx, int64_t m0, int64_t rows, int64_t k0, int64_t kc, int mr, float* dst);
void prefetch_a_rows(const void* ctx, int64_t m0, int64_t rows, int64_t k0, int64_t kc);
// Makes j's A the row-major matrix a (packer, prefetcher, in-place reads); a must outlive the job.
void set_row_major_a(GemmJob& j, const RowMajorA& a);

// Validates ep.residual against C (M x N, rows ldc apart); returns true when
// residual is exactly C (then C is accumulated into). Throws on other overlaps.
bool check_residual(const Epilogue& ep, int64_t M, int64_t N, const float* C, int64_t ldc);

}  // namespace slimrt::kernels::detail

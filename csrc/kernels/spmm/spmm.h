// Sparse (CSR) weight x dense activation products, executed in the CSR domain.
//
//   y[m][n] = act( (sum_j  x[m][col[j]] * v[j]) * rs[n] * scale[n] + bias[n] + residual[m*ldr + n] )
//             j over the CSR row n: indptr[n] .. indptr[n+1]
//
// W is [N][K] = [out][in] (one CSR row per output channel). Values are f32 (rs = 1),
// int8 with a row scale rs[n] (QInt8 per row: w = rs[n] * q; a per-tensor scale is
// broadcast to every row at pack time), or uint8 codes into a table of <= 16 floats
// (shared or one per row) with an optional row scale: v = table[n][code] (* rs[n]) --
// a CSR whose values are a 4-bit codebook or log2 tensor runs on its codes (1 byte per
// non-zero instead of 4), decoded in registers (vpermps) inside the kernels. Column indices are kept as uint16 when
// K <= 65536 (half the index bandwidth) and int32 otherwise; the matrix is never
// expanded to dense.
//
// Paths (chosen per call from M):
//   M <  kCsrSellMaxM(Avx2), when pack_csr built a CsrSell (see below): the sliced-ELL GEMV.
//   M <  kCsrGemvMaxM : otherwise per activation row, a gather GEMV: 16 (AVX-512) / 8 (AVX2)
//                       nnz at a time, x[col] gathered, FMA with the values.
//   M >= kCsrGemvMaxM : x is transposed block by block into xt[K][mb] (mb = 16..64
//                       activation rows, chosen so xt stays in L2); each nnz then is
//                       one broadcast of v[j] and mb/16 FMAs with the xt row col[j].
// Threads split the CSR rows into ranges of equal nnz (+ a per-row overhead; sliced ELL: windows).
// Results do not depend on the thread count (the per-row summation order is fixed).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/common.h"
#include "core/cpu.h"
#include "kernels/act.h"
#include "kernels/gemm/conv2d.h"

namespace slimrt::kernels {

// Element types of the raw CSR arrays handed to pack_csr (codes as in formats.py DTYPES).
enum class CsrType : int { F32 = 1, I8 = 3, U8 = 4, U16 = 6, I32 = 7, I64 = 8 };
constexpr int64_t kCsrMaxTable = 16;  // entries of a code table (uint8 values)

// Batch-1 layout built by pack_csr next to the CSR arrays (sliced ELLPACK over column windows):
// rows sorted by non-zero count (descending, stable) within windows of kCsrSellWindow rows (perm:
// lane position -> row; similar rows share a slice), then in slices of L (= the ISA's lanes, 16
// AVX-512 / 8 AVX2; one vector lane per row). Window position b of a slice covers the x columns
// [b*A, b*A + 2L) (two vectors); A (advance) = L on AVX-512, so consecutive windows overlap by
// half, and 2L on AVX2 (disjoint blocks: its 8-lane slices have twice the positions, and their
// per-position cost outweighs the saved steps). A non-zero in column c must be taken by position
// min(c / A, nb - 1), the last window holding it; position b gets as many steps as the slice's
// row with the most non-zeros due there, and every row fills those steps with its next
// non-zeros inside the window (working ahead: with overlapping windows, ~20% fewer steps than
// disjoint blocks at 70-90% sparsity). A step is L u8 in-window columns (col - b*A) and L values
// (lane l = row perm[s*L + l]; rows with nothing to take padded with column 0 and value 0);
// cnt[s][b] steps for position b, slice s's steps from off[s] in position order. The kernels
// skip empty positions, load a position's two x vectors (aligned: x is copied into the
// workspace, padded with zeros to (nb - 1) * A + 2L floats), then per step pick x by an
// in-register permute (vpermt2ps / 2 vpermps + blend), load the L values, FMA.
// Values: f32, i8 (row scale in the epilogue) or u8 codes into
// one shared 16-entry table (per-row tables that are all equal count as one): padding uses a code
// whose entry is 0, or, when the table has none, is marked by bit 7 of its index byte and masked
// to 0 in the kernel. Codes with distinct per-row tables are stored as f32 values here.
// Padding is exact (0 * x == 0) unless x holds inf/nan: a row whose sum comes out nan is
// recomputed by the CSR path. The summation order of a row is fixed by this layout (the same for
// any batch on this path). Threads take whole row windows, balanced by steps.
// Rule (pack time, see sell_pays() in spmm.cpp): built when the modelled time of its steps is
// below that of the gather GEMV and its bytes stay <= kCsrSellMaxBytes x the CSR arrays'.
// Codes are stored as f32 instead when the model says the decode costs more than the bytes save.
// SLIMRT_CSR_LAYOUT=csr|sell (read by pack_csr) forces the choice (sell: with the values' own
// kind), for tests and benchmarks.
struct CsrSell {
  int lanes = 0, block = 0;       // L and the window width 2L
  int advance = 0;                // A: columns from one window position to the next (L or 2L)
  int vkind = 0;                  // 0 f32, 1 int8, 2 u8 codes into `table` (with a 0), 3 codes (index bit 7 = pad)
  int64_t slices = 0, nb = 0, steps = 0;  // nb: window positions per slice
  AlignedPtr<uint8_t> cnt;        // [slices][nb] steps per position
  AlignedPtr<int64_t> off;        // [slices + 1] first step of each slice
  AlignedPtr<uint8_t> idx;        // [steps][L]
  AlignedPtr<uint8_t> values;     // [steps][L] of f32 / int8 / u8
  AlignedPtr<int32_t> perm;       // [slices * L] row of each lane position, -1 past N
  alignas(64) float table[16] = {};
  size_t bytes() const;
};
constexpr double kCsrSellMaxBytes = 3.0;
constexpr int64_t kCsrSellWindow = 128;  // rows sorted within windows (a multiple of 16)

struct PackedCsr {
  int64_t N = 0, K = 0, nnz = 0;
  Isa isa = Isa::Scalar;
  bool idx16 = true;              // column indices uint16 (else int32)
  bool int8 = false;              // values int8 with row_scale (else f32)
  bool codes = false;             // values uint8 codes into `table` (row_scale optional)
  int64_t table_rows = 0;         // codes: 1 (one shared table) or N
  AlignedPtr<float> table;        // codes: [table_rows][kCsrMaxTable], unused entries 0
  AlignedPtr<int64_t> indptr;     // [N+1]
  AlignedPtr<uint8_t> indices;    // [nnz] uint16 or int32 (+64 bytes of zero padding)
  AlignedPtr<uint8_t> values;     // [nnz] f32 or int8 (+64 bytes of zero padding)
  AlignedPtr<float> row_scale;    // [N] (int8 values; codes with a scale), else null
  std::unique_ptr<CsrSell> sell;  // batch-1 layout, null when the rule kept the gather GEMV
  size_t bytes() const;           // bytes of the packed CSR arrays (for reports)
  size_t sell_bytes() const { return sell ? sell->bytes() : 0; }  // extra bytes of the batch-1 layout
};

// Validates and repacks raw CSR arrays (throws Error(InvalidArgument) on anything
// inconsistent: indptr not 0..nnz non-decreasing, a column >= K, wrong dtypes).
//   indptr: N+1 of indptr_type (I32/I64); indices: nnz of index_type (U16/I32);
//   values: nnz of value_type: F32; I8 with scale (n_scale 1 = per tensor, or N = per row); or
//   U8 codes < table_size (<= kCsrMaxTable) into `table` [table_rows (1 or N)][table_size],
//   with an optional scale (n_scale 0, 1 or N).
std::unique_ptr<PackedCsr> pack_csr(int64_t N, int64_t K, const void* indptr, CsrType indptr_type,
                                    const void* indices, CsrType index_type, int64_t nnz, const void* values,
                                    CsrType value_type, const float* scale, int64_t n_scale, Isa isa,
                                    const float* table = nullptr, int64_t table_rows = 0, int64_t table_size = 0);

// Below this batch the gather-GEMV path is used (without a CsrSell).
constexpr int64_t kCsrGemvMaxM = 3;
// Below this batch a matrix with a CsrSell runs it (activation rows in groups of up to 4
// (AVX-512) / 2 (AVX2) sharing each step's loads), else the transposed tiles. Measured at
// N = K = 1024, 1 thread: AVX-512 M = 7 1.25x (90%) .. 2x (50%) the tiles, M = 8 a tie at 90%,
// M = 16 0.7x; AVX2 M = 2 1.2x, M = 3 0.8x at 90%.
constexpr int64_t kCsrSellMaxM = 8;      // AVX-512
constexpr int64_t kCsrSellMaxMAvx2 = 3;  // AVX2

// Scratch csr_dense needs for M activation rows with `threads` threads.
size_t csr_dense_workspace(int64_t M, const PackedCsr& W, int threads);

// y[M][N] (rows ldy apart) = epilogue(x[M][K] (rows ldx apart) x W^T), see the equation above.
// ws: csr_dense_workspace(M, W, threads) bytes, 64-byte aligned, or null (allocated per call).
// residual must not overlap y. threads <= 0: default_threads().
void csr_dense(int64_t M, const float* x, int64_t ldx, const PackedCsr& W, float* y, int64_t ldy,
               const Epilogue& ep, void* ws, int threads);

// Sparse NHWC convolution: W is CSR [O][KH*KW*Cg] (OHWI rows, like conv2d.h's weights).
// 1x1 stride-1 unpadded convolutions run the SpMM directly on x; other shapes gather
// im2col blocks of kConvRows pixels into the workspace first. ldr of ep.residual is O.
constexpr int64_t kCsrConvRows = 128;
size_t csr_conv2d_workspace(const Conv2dShape& s, const PackedCsr& W, int threads);
void csr_conv2d(const Conv2dShape& s, const float* x, const PackedCsr& W, float* y, const Epilogue& ep,
                void* ws, int threads);

// Epilogue helpers shared with lutgemm (the kernels accumulate a row, then these finish it):
// y[j] = act(acc[j] * rs[j] * ep.scale[n0+j] + ep.bias[n0+j] + res[j]) for j < cnt (rs, res may be null).
void epilogue_row(float* y, const float* acc, int64_t cnt, const float* rs, const Epilogue& ep, int64_t n0,
                  const float* res, Isa isa);
// Throws InvalidArgument ("<who>: ...") when ep.residual would overlap y or has ldr < N.
void check_residual(int64_t M, int64_t N, const float* y, int64_t ldy, const Epilogue& ep, const char* who);


}  // namespace slimrt::kernels

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
//   M <  kCsrGemvMaxM : per activation row, a gather GEMV: 16 (AVX-512) / 8 (AVX2)
//                       nnz at a time, x[col] gathered, FMA with the values.
//   M >= kCsrGemvMaxM : x is transposed block by block into xt[K][mb] (mb = 16..64
//                       activation rows, chosen so xt stays in L2); each nnz then is
//                       one broadcast of v[j] and mb/16 FMAs with the xt row col[j].
// Threads split the CSR rows into ranges of equal nnz (+ a per-row overhead).
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
  size_t bytes() const;           // bytes of the packed arrays (for reports)
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

// Below this batch the gather-GEMV path is used.
constexpr int64_t kCsrGemvMaxM = 3;

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

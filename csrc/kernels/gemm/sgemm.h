// fp32 GEMM with weights packed once per ISA.
//
//   C[m][n] = act( (sum_k A[m][k] * W[n][k]) * scale[n] + bias[n] + residual[m*ldr + n] )
//
// scale, bias and residual are each optional (see kernels/act.h Epilogue).
// Kernels: scalar (plain loops, the reference), AVX2+FMA (6x16 microtile),
// AVX-512 (12x32 microtile; also used for avx512vnni/amx, which add nothing
// for fp32). Packed B layout: [ceil(N/NR)][K][NR] panels, zero-padded.
//
// Determinism: for a given ISA and shape (M, N, K) the result does not depend on
// the thread count (threads only change which thread computes which tile; the
// K blocking and the per-element summation order are fixed by M and K alone).
// Threads: work is split over row blocks x panel ranges (M = 1: over panel groups),
// so M = 1 still uses every thread. threads <= 0 means default_threads().
#pragma once
#include <cstdint>
#include <memory>

#include "core/common.h"
#include "core/cpu.h"
#include "kernels/act.h"

namespace slimrt::kernels {

// Weights packed for one ISA's microkernel; owns its aligned buffer.
struct PackedSgemmB {
  int64_t N = 0, K = 0;
  Isa isa = Isa::Scalar;   // the ISA it was packed for; only that ISA's kernel runs it
  int nr = 0;              // panel width (columns per panel)
  int64_t panels = 0;      // ceil(N / nr)
  AlignedPtr<float> data;  // [panels][K][nr], columns >= N are zero
};

// W row-major [N][K] (one row per output channel, like a torch Linear weight).
std::unique_ptr<PackedSgemmB> pack_sgemm_b(const float* W, int64_t N, int64_t K, Isa isa);
// B row-major [K][N] with rows ldb apart (Keras Dense kernel layout, or activations);
// packs with up to `threads` threads.
std::unique_ptr<PackedSgemmB> pack_sgemm_b_kn(const float* B, int64_t K, int64_t N, int64_t ldb, Isa isa,
                                              int threads = 1);
// W row-major [N][K] with rows ldw apart; packs with up to `threads` threads.
std::unique_ptr<PackedSgemmB> pack_sgemm_b_nk(const float* W, int64_t N, int64_t K, int64_t ldw, Isa isa,
                                              int threads = 1);

// C[M][N] (rows ldc apart) = epilogue(A[M][K] (rows lda apart) x B^T).
// `residual` may be exactly C (same pointer, ldr == ldc) when ep.scale is null
// (C is then accumulated into); any other overlap of residual or A with C is rejected.
// Throws Error(InvalidArgument) on bad sizes, Error(Unsupported) when the plan's ISA
// cannot run on this CPU.
void sgemm(int64_t M, const float* A, int64_t lda, const PackedSgemmB& B, float* C, int64_t ldc,
           const Epilogue& ep, int threads);

// Un-packed convenience: B is [K][N] (rows ldb apart) or, with trans_b, [N][K];
// packs B per call.
void sgemm_nn(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
              bool trans_b, float* C, int64_t ldc, const Epilogue& ep, Isa isa, int threads);

// x[i] = act(x[i]) for i < n. Relative error vs float64 where |y| > 1e-30 (tested):
//   relu, relu6: exact; leaky_relu, hard_sigmoid, hard_swish: float rounding (<= 3e-7);
//   sigmoid, silu, tanh, elu, gelu (erf): <= 1e-6 (measured <= 3.3e-7);
//   gelu_tanh: <= 2e-6 for |x| <= 5, <= 1e-5 beyond (its exponent 0.07 x^3 carries x^3's rounding).
// The scalar ISA evaluates in double (<= 1 float ulp). NaN propagates.
void apply_act_inplace(float* x, int64_t n, Act act, float alpha, Isa isa);

// Name <-> Act ("none", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "gelu",
// "gelu_tanh", "silu", "hard_swish", "elu", "hard_sigmoid").
bool parse_act(const char* name, Act* out);
const char* act_name(Act act);

}  // namespace slimrt::kernels

// fp32 elementwise, normalisation and softmax kernels, plus dtype-generic
// transpose and pad. Namespace slimrt::kernels.
//
// Layout: every tensor is dense C-contiguous; "rows x n" kernels treat the
// tensor as rows of n contiguous floats (the last axis). Activations are NHWC,
// so per-channel vectors (prelu slope, channel_affine s/t) run along the last
// axis. All kernels allow y == x (in place) unless stated otherwise; partial
// overlap is not allowed.
//
// ISA selection: each ISA file (eltwise_scalar.cpp, eltwise_avx2.cpp,
// eltwise_avx512.cpp) fills one EltwiseKernels table from the same generic
// code (eltwise_impl.h, vmath.h); eltwise_kernels(isa) picks the table
// (avx512vnni/amx use the avx512 one). The driver functions below split work
// over threads with slimrt::parallel_for and call the table; they throw
// slimrt::Error(Unsupported) for an ISA this CPU lacks.
//
// Accuracy of the transcendental activations: see vmath.h (rel err <= ~3e-7,
// gelu abs err <= 2e-7 |x|).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/cpu.h"
#include "kernels/act.h"

namespace slimrt::kernels {

enum class BinaryOp : int32_t { Add = 0, Sub = 1, Mul = 2, Div = 3 };

// Mask rows for softmax: row r of x uses mask row
//   data + ((r / div) % mod) * stride            (stride 0: one row for all)
// e.g. attention scores [B,H,Sq,Sk] with a key-padding mask [B,Sk]:
//   div = H*Sq, mod = B, stride = Sk; a causal [Sq,Sk] mask: div = 1, mod = Sq.
struct SoftmaxMask {
  const float* data = nullptr;  // null: no mask
  int64_t stride = 0;
  int64_t div = 1;
  int64_t mod = 1;
};

struct EltwiseKernels {
  const char* isa;
  // y[i] = act(x[i]), i < n.
  void (*act)(const float* x, float* y, int64_t n, Act act, float alpha);
  // rows x c: y[r][j] = x >= 0 ? x : x * slope[j]   (full-size slope: rows = 1, c = n)
  void (*prelu)(const float* x, const float* slope, float* y, int64_t rows, int64_t c);
  // y[i] = a[i*sa] op b[i*sb], i < n, with sa, sb in {0, 1} (0 = broadcast scalar).
  void (*binary)(BinaryOp op, const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n);
  // rows [r0, r1) of y = softmax(x * scale + mask_row) over n; max-subtracted.
  void (*softmax)(const float* x, float* y, int64_t r0, int64_t r1, int64_t n, float scale,
                  const SoftmaxMask& mask);
  // rows [r0, r1): y = (x - mean) / sqrt(var + eps) * gamma + beta (gamma/beta may be null;
  // var is the biased two-pass variance over n).
  void (*layer_norm)(const float* x, const float* gamma, const float* beta, float* y, int64_t r0,
                     int64_t r1, int64_t n, float eps);
  // rows x c: y[r][j] = x[r][j] * s[j] + t[j]   (s or t may be null: 1 / 0).
  void (*channel_affine)(const float* x, const float* s, const float* t, float* y, int64_t rows,
                         int64_t c);
  // 2-D fp32 transpose of a rows x cols block: dst[j*ldd + i] = src[i*lds + j].
  void (*transpose2d)(const float* src, int64_t lds, float* dst, int64_t ldd, int64_t rows,
                      int64_t cols);
  // sum of x[i], i < n: four streams, one vector accumulator each (lane sums in float, combined
  // in double) -- every element read once at the widest load the ISA has.
  double (*sum)(const float* x, int64_t n);
};

const EltwiseKernels& eltwise_kernels(Isa isa);  // throws Unsupported if the CPU lacks `isa`
const EltwiseKernels& eltwise_kernels_scalar();
const EltwiseKernels& eltwise_kernels_avx2();
const EltwiseKernels& eltwise_kernels_avx512();

// ---- drivers (threaded with parallel_for; `threads` <= 1 runs on the caller) ----

// In-place activation, the per-ISA entry the brief names; y = act(x) out of place.
void act_inplace(float* x, int64_t n, Act act, float alpha, Isa isa, int threads = 1);
void act(const float* x, float* y, int64_t n, Act act, float alpha, Isa isa, int threads = 1);

// slope_len == c (per channel, c = last dim) or == n (full size).
void prelu(const float* x, const float* slope, int64_t slope_len, float* y, int64_t n, Isa isa,
           int threads = 1);

// numpy broadcasting of a [a_rank] and b [b_rank] (rank <= 6) into y, whose
// shape is the broadcast shape (see broadcast_shape). Dims are right-aligned.
constexpr int kMaxRank = 6;
// Writes the broadcast shape into out (rank max(a_rank, b_rank)); false if the shapes do not broadcast.
bool broadcast_shape(const int64_t* a_shape, int a_rank, const int64_t* b_shape, int b_rank,
                     int64_t* out, int* out_rank);
void binary(BinaryOp op, const float* a, const int64_t* a_shape, int a_rank, const float* b,
            const int64_t* b_shape, int b_rank, float* y, Isa isa, int threads = 1);

void softmax(const float* x, float* y, int64_t rows, int64_t n, float scale, const SoftmaxMask& mask,
             Isa isa, int threads = 1);
void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows,
                int64_t n, float eps, Isa isa, int threads = 1);
void channel_affine(const float* x, const float* s, const float* t, float* y, int64_t rows, int64_t c,
                    Isa isa, int threads = 1);

// Sum of x[0..n): one contiguous chunk per thread (partial sums added in chunk order, so the
// result depends on the thread count only through float rounding). Reads every element once as
// fast as a core can stream it: the plain-read speed that any kernel reading the same bytes
// (a batch-1 GEMV reading its weights) is measured against.
double sum(const float* x, int64_t n, Isa isa, int threads = 1);

// y = x.transpose(perm): y's dim d is x's dim perm[d]. elem_size in {1, 2, 4, 8}.
// Size-1 dims are dropped and dims adjacent in both orders merged first; a copy
// whose innermost dim stays innermost becomes memcpy runs, otherwise the two
// innermost dims are moved with a cache-blocked 2-D transpose (the fp32 one per ISA).
void transpose(const void* x, void* y, const int64_t* shape, const int* perm, int rank,
               size_t elem_size, Isa isa, int threads = 1);

// Constant pad: y dim d has size shape[d] + begin[d] + end[d] (pads may be
// negative = crop, the size must stay >= 0); elements outside x get `value`
// (elem_size bytes). elem_size in {1, 2, 4, 8}. ISA-independent (memcpy/fill).
void pad(const void* x, void* y, const int64_t* shape, const int64_t* begin, const int64_t* end,
         int rank, const void* value, size_t elem_size, int threads = 1);

}  // namespace slimrt::kernels

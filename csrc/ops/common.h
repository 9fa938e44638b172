// Helpers shared by op implementations (not by kernels).
#pragma once
#include <array>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/act.h"
#include "kernels/dwconv/dwconv.h"
#include "kernels/pool/pool.h"
#include "runtime/op.h"

namespace slimrt::ops {

// The node's `act`/`alpha` attributes as a kernel activation.
std::pair<Act, float> parse_act(const BuildContext& c);

// A constant float vector input of exactly n elements (bias, BN parameters).
const float* vector_constant(const BuildContext& c, size_t input, int64_t n, const char* what);

// [O, KH, KW, C/groups] of a conv2d weight: 4-D, or 2-D (e.g. CSR) with the `kernel` attribute.
std::array<int64_t, 4> conv_weight_dims(const BuildContext& c);

// Fused residual input of dense/conv2d (attribute residual=1: the last input, added before the
// activation). Returns its input index, or -1; *bias_index gets the bias input or -1.
int residual_input(const BuildContext& c, int* bias_index);
void check_residual(const std::vector<const TensorInfo*>& in, int ridx, const TensorInfo& out);

void expect_f32(const TensorInfo& t, const char* what);

// Convolution / pooling output length (floor mode).
inline int64_t conv_out(int64_t size, int64_t k, int64_t stride, int64_t dil, int64_t p0, int64_t p1) {
  int64_t eff = dil * (k - 1) + 1;
  int64_t num = size + p0 + p1 - eff;
  return num < 0 ? 0 : num / stride + 1;
}

// A pooling node's window (kernel, strides, pads, ceil_mode) as a Pool2dShape without sizes, and the
// full shape for an NHWC input x (shape_error unless x is 4-D).
kernels::Pool2dShape pool_window(const BuildContext& c);
kernels::Pool2dShape pool_shape(const kernels::Pool2dShape& window, const std::vector<int64_t>& x);

// Returns the depthwise op for a conv2d node that is depthwise (groups == C,
// one input channel per group), else nullptr.
std::unique_ptr<Op> make_depthwise_conv(BuildContext& c);

// What a fp32 depthwise conv2d op computes, for an op that fuses it (the pointwise conv after it):
// weights [KH][KW][C], the epilogue (bias, activation), the shape without sizes. Owned by the op.
struct DepthwiseStage {
  kernels::DwConv2dShape base;  // kernel, strides, dilations, pads; mult == 1
  int64_t c = 0;
  const float* w = nullptr;
  Epilogue ep;                  // bias, act, alpha; no residual
  Isa isa = Isa::Scalar;
  size_t inputs = 0;            // the depthwise node's input count
  // Validated shape for an NHWC input x (shape_error otherwise).
  kernels::DwConv2dShape shape_of(const std::vector<int64_t>& x) const;
};
// op's depthwise stage when op is a fp32 depthwise conv2d that fuses (channel multiplier 1, no
// residual input), else null.
const DepthwiseStage* depthwise_stage(const Op& op);

// How a fused depthwise -> pointwise op (fp32 DwPointwiseOp, int8 QDwPointwiseOp) splits its work.
// A depthwise output of at least kFuseMinBytes (about a core's L2) is computed chunk by chunk: R
// output rows (of the flattened (n, oh) index) at a time into a per-thread buffer that stays in the
// cache, about kChunkPixels pointwise GEMM rows (the GEMM's own row blocks are of that order, so its
// weights are read about as often as unfused) and at most kChunkBytes. A smaller one is computed
// whole, then the pointwise conv runs over it (as two separate nodes would).
struct FusedChunks {
  static constexpr int64_t kFuseMinBytes = int64_t{1} << 20;
  static constexpr int64_t kChunkPixels = 256;
  static constexpr int64_t kChunkBytes = int64_t{256} << 10;
  int64_t rows = 0, R = 0;  // output rows and rows per chunk (rows when not chunked)
  bool chunked = false;
  size_t mid_bytes = 0;     // the depthwise output buffer: one chunk, or all of it
  FusedChunks(int64_t rows, int64_t ow, int64_t row_bytes);
  // Rows per chunk of `rows` output rows of ow pixels and row_bytes bytes (the rule above).
  static int64_t chunk_rows(int64_t rows, int64_t ow, int64_t row_bytes);
  static size_t align(size_t b) { return (b + 63) / 64 * 64; }
  // Calls fn(r0, r1, next, slot) for every chunk on up to `threads` threads; next: the first row
  // of the chunk this thread runs after this one (claimed ahead, so its input can be prefetched),
  // or -1; slot: this thread's slot_bytes of ws (64-byte aligned, the chunk buffer first).
  void run(int threads, void* ws, size_t slot_bytes,
           const std::function<void(int64_t r0, int64_t r1, int64_t next, uint8_t* slot)>& fn) const;
  // The bytes of a depthwise input (NHWC, elem_bytes each) that output rows [r0, min(r0 + R, rows))
  // read: {offset, length} (whole input rows, images consecutive).
  std::pair<int64_t, int64_t> input_span(const kernels::DwConv2dShape& s, int64_t r0, size_t elem_bytes) const;
};

// The inputs of the op a fused op wraps (a tensor or its info): `first` (what the fused op made in place of
// the wrapped op's input 0), then the fused op's inputs from `from` on.
template <typename T>
std::vector<const T*> inner_inputs(const std::vector<const T*>& in, const T* first, size_t from) {
  std::vector<const T*> r{first};
  r.insert(r.end(), in.begin() + static_cast<std::ptrdiff_t>(from), in.end());
  return r;
}

// How a fused expansion -> depthwise -> pointwise op (fp32 ExpandDwPointwiseOp, int8
// QExpandDwPointwiseOp) walks its work when the expansion output is too big to write whole: depthwise
// output rows in chunks of R (FusedChunks::chunk_rows) within one image, in runs of consecutive
// chunks (one run per image when there are images enough for the threads, else a few per thread);
// each thread takes a run at a time and, per chunk, computes only the expansion rows the chunk reads
// into the head of its slot, keeping those the run's previous chunk made (the buffer slides down the
// image), then hands the chunk over.
struct ExpandChunks {
  kernels::DwConv2dShape s;  // the depthwise conv (input = the expansion output)
  int64_t R = 0;             // depthwise output rows per chunk
  int64_t erows = 0;         // expansion rows one chunk reads, at most
  size_t row_bytes = 0;      // bytes of one expansion row (s.w * s.c elements)
  size_t mid_bytes = 0;      // bytes of one chunk of depthwise output (R * s.ow * s.c elements)
  ExpandChunks(const kernels::DwConv2dShape& s, size_t elem_bytes);
  // Whether an expansion output of shape e (NHWC, elem_bytes each) is walked this way (at least
  // FusedChunks::kFuseMinBytes) rather than made whole.
  static bool walks(const std::vector<int64_t>& e, size_t elem_bytes) {
    return e[0] * e[1] * e[2] * e[3] * static_cast<int64_t>(elem_bytes) >= FusedChunks::kFuseMinBytes;
  }
  // A slot: the expansion rows at its head, the chunk of depthwise output at mid_at(), the caller's
  // GEMM scratch (`scratch` bytes) at scratch_at().
  size_t mid_at() const { return FusedChunks::align(static_cast<size_t>(erows) * row_bytes); }
  size_t scratch_at() const { return mid_at() + FusedChunks::align(mid_bytes); }
  size_t slot_bytes(size_t scratch) const { return scratch_at() + FusedChunks::align(scratch); }
  // expand(n, i0, i1, dst, slot): expansion rows [i0, i1) of image n into dst (in the slot's buffer);
  // chunk(n, r0, r1, a, slot): depthwise output rows [r0, r1) of image n from the buffer at the
  // slot's head, which holds the expansion rows from a on. Slots: slot_bytes each, 64-byte aligned.
  void run(int threads, void* ws, size_t slot_bytes,
           const std::function<void(int64_t n, int64_t i0, int64_t i1, uint8_t* dst, uint8_t* slot)>& expand,
           const std::function<void(int64_t n, int64_t r0, int64_t r1, int64_t a, uint8_t* slot)>& chunk) const;
};

}  // namespace slimrt::ops

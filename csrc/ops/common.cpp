#include "ops/common.h"

#include <algorithm>
#include <atomic>

#include "core/threadpool.h"
#include "kernels/gemm/sgemm.h"

namespace slimrt::ops {

std::pair<Act, float> parse_act(const BuildContext& c) {
  Act a;
  const std::string& name = c.node.attr_str("act");
  if (!kernels::parse_act(name.c_str(), &a)) c.fail(Code::Format, "unknown activation '" + name + "'");
  return {a, static_cast<float>(c.node.attr_float("alpha"))};
}

const float* vector_constant(const BuildContext& c, size_t input, int64_t n, const char* what) {
  const Tensor& t = c.dense_constant(input);
  if (t.info.dtype != DType::F32 || t.numel() != n)
    c.fail(Code::Format, std::string(what) + " must be " + std::to_string(n) + " floats, got " +
                             dtype_name(t.info.dtype) + " " + shape_str(t.shape()));
  return t.as<float>();
}

std::array<int64_t, 4> conv_weight_dims(const BuildContext& c) {
  const TensorDef& w = c.tensor_def(1);
  auto k = c.node.attr_ints("kernel");
  if (w.shape.size() == 4) {
    if (!k.empty() && (k.size() != 2 || k[0] != w.shape[1] || k[1] != w.shape[2]))
      c.fail(Code::Format, "kernel attribute disagrees with the 4-D weight");
    return {w.shape[0], w.shape[1], w.shape[2], w.shape[3]};
  }
  if (w.shape.size() != 2 || k.size() != 2 || k[0] < 1 || k[1] < 1 || w.shape[1] % (k[0] * k[1]))
    c.fail(Code::Format, "weight must be [O, KH, KW, C/groups], or 2-D [O, KH*KW*C/groups] with kernel=[KH, KW]");
  return {w.shape[0], k[0], k[1], w.shape[1] / (k[0] * k[1])};
}

int residual_input(const BuildContext& c, int* bias_index) {
  int n = static_cast<int>(c.node.inputs.size());
  int r = c.node.attr_int("residual") ? n - 1 : -1;
  if (r >= 0 && r < 2) c.fail(Code::Format, "residual=1 needs a residual input after the weight");
  if (r >= 0 && c.is_constant(r)) c.fail(Code::Format, "the residual input must not be a constant");
  int with_bias = (r >= 0 ? n - 1 : n) > 2;
  *bias_index = with_bias ? 2 : -1;
  return r;
}

void check_residual(const std::vector<const TensorInfo*>& in, int ridx, const TensorInfo& out) {
  if (ridx < 0) return;
  if (in[ridx]->dtype != DType::F32 || in[ridx]->shape != out.shape)
    shape_error("residual " + shape_str(in[ridx]->shape) + " does not match the output " + shape_str(out.shape));
}

void expect_f32(const TensorInfo& t, const char* what) {
  if (t.dtype != DType::F32)
    shape_error(std::string(what) + " must be float32, got " + dtype_name(t.dtype));
}

kernels::Pool2dShape pool_window(const BuildContext& c) {
  kernels::Pool2dShape w;
  auto k = c.node.attr_ints("kernel"), s = c.node.attr_ints("strides"), p = c.node.attr_ints("pads");
  w.kh = static_cast<int>(k[0]); w.kw = static_cast<int>(k[1]);
  w.sh = static_cast<int>(s[0]); w.sw = static_cast<int>(s[1]);
  w.pt = static_cast<int>(p[0]); w.pl = static_cast<int>(p[1]);
  w.pb = static_cast<int>(p[2]); w.pr = static_cast<int>(p[3]);
  w.ceil_mode = c.node.attr_int("ceil_mode") != 0;
  return w;
}

kernels::Pool2dShape pool_shape(const kernels::Pool2dShape& window, const std::vector<int64_t>& x) {
  if (x.size() != 4) shape_error("pooling input must be NHWC, got " + shape_str(x));
  kernels::Pool2dShape s = window;
  s.n = x[0]; s.h = x[1]; s.w = x[2]; s.c = x[3];
  kernels::pool2d_output_size(s);
  return s;
}

int64_t FusedChunks::chunk_rows(int64_t rows, int64_t ow, int64_t row_bytes) {
  return std::min(rows, std::max<int64_t>(1, std::min((kChunkPixels + ow - 1) / ow, kChunkBytes / row_bytes)));
}

FusedChunks::FusedChunks(int64_t rows_, int64_t ow, int64_t row_bytes) : rows(rows_) {
  chunked = rows * row_bytes >= kFuseMinBytes;
  R = chunked ? chunk_rows(rows, ow, row_bytes) : rows;
  mid_bytes = static_cast<size_t>(R * row_bytes);
}

void FusedChunks::run(int threads, void* ws, size_t slot_bytes,
                      const std::function<void(int64_t, int64_t, uint8_t*)>& fn) const {
  const int64_t nchunks = (rows + R - 1) / R;
  const int T = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, nchunks)));
  std::atomic<int64_t> next{0};
  ThreadPool::global().run(T, T, [&](int64_t t) {
    uint8_t* slot = static_cast<uint8_t*>(ws) + static_cast<size_t>(t) * slot_bytes;
    for (int64_t ch; (ch = next.fetch_add(1)) < nchunks;) fn(ch * R, std::min(rows, ch * R + R), slot);
  });
}

}  // namespace slimrt::ops

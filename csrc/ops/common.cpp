#include "ops/common.h"

#include <algorithm>
#include <atomic>
#include <cstring>

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
                      const std::function<void(int64_t, int64_t, int64_t, uint8_t*)>& fn) const {
  const int64_t nchunks = (rows + R - 1) / R;
  const int T = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, nchunks)));
  std::atomic<int64_t> next{0};
  ThreadPool::global().run(T, T, [&](int64_t t) {
    uint8_t* slot = static_cast<uint8_t*>(ws) + static_cast<size_t>(t) * slot_bytes;
    for (int64_t ch = next.fetch_add(1); ch < nchunks;) {
      const int64_t after = next.fetch_add(1);
      fn(ch * R, std::min(rows, ch * R + R), after < nchunks ? after * R : -1, slot);
      ch = after;
    }
  });
}

std::pair<int64_t, int64_t> FusedChunks::input_span(const kernels::DwConv2dShape& s, int64_t r0,
                                                    size_t elem_bytes) const {
  const int64_t r1 = std::min(rows, r0 + R) - 1;  // last output row
  const int64_t n0 = r0 / s.oh, n1 = r1 / s.oh;
  const int64_t i0 = std::clamp<int64_t>((r0 % s.oh) * s.sh - s.pt, 0, s.h);
  const int64_t i1 = std::clamp<int64_t>((r1 % s.oh) * s.sh - s.pt + int64_t{s.kh - 1} * s.dh + 1, 0, s.h);
  const int64_t row = s.w * s.c * static_cast<int64_t>(elem_bytes);
  const int64_t b0 = (n0 * s.h + i0) * row, b1 = (n1 * s.h + i1) * row;
  return {b0, std::max<int64_t>(0, b1 - b0)};
}

ExpandChunks::ExpandChunks(const kernels::DwConv2dShape& s_, size_t elem_bytes) : s(s_) {
  R = FusedChunks::chunk_rows(s.oh, s.ow, s.ow * s.c * static_cast<int64_t>(elem_bytes));
  erows = std::min(s.h, (R - 1) * s.sh + (s.kh - 1) * s.dh + 1);
  row_bytes = static_cast<size_t>(s.w * s.c) * elem_bytes;
  mid_bytes = static_cast<size_t>(R * s.ow * s.c) * elem_bytes;
}

void ExpandChunks::run(int threads, void* ws, size_t slot_bytes,
                       const std::function<void(int64_t, int64_t, int64_t, uint8_t*, uint8_t*)>& expand,
                       const std::function<void(int64_t, int64_t, int64_t, int64_t, uint8_t*)>& chunk) const {
  const int64_t cpi = (s.oh + R - 1) / R;  // chunks per image
  const int T = std::max(1, threads);
  const int64_t rpi = T == 1 ? 1 : std::min(cpi, std::max<int64_t>(1, (4 * T + s.n - 1) / s.n));  // runs per image
  const int64_t nruns = s.n * rpi;
  std::atomic<int64_t> next{0};
  ThreadPool::global().run(std::min<int64_t>(T, nruns), T, [&](int64_t t) {
    uint8_t* slot = static_cast<uint8_t*>(ws) + static_cast<size_t>(t) * slot_bytes;
    for (int64_t run; (run = next.fetch_add(1)) < nruns;) {
      const int64_t n = run / rpi, q = run % rpi;
      int64_t ea = 0, eb = 0;  // expansion rows [ea, eb) of image n at the slot's head
      for (int64_t c = q * cpi / rpi; c < (q + 1) * cpi / rpi; ++c) {
        const int64_t r0 = c * R, r1 = std::min(s.oh, r0 + R);
        const int64_t a = std::max<int64_t>(0, r0 * s.sh - s.pt);
        const int64_t b = std::min(s.h, (r1 - 1) * s.sh - s.pt + (s.kh - 1) * s.dh + 1);
        const int64_t keep = eb > a && a >= ea ? eb - a : 0;  // rows [a, eb) are there already
        if (keep && a > ea) std::memmove(slot, slot + (a - ea) * row_bytes, keep * row_bytes);
        if (b > a + keep) expand(n, a + keep, b, slot + keep * row_bytes, slot);
        ea = a, eb = b;
        chunk(n, r0, r1, a, slot);
      }
    }
  });
}

}  // namespace slimrt::ops

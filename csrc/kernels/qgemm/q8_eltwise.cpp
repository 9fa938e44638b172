#include "kernels/qgemm/q8_eltwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/threadpool.h"

namespace slimrt::kernels {
namespace {

[[noreturn]] void bad(const std::string& msg) { fail(Code::InvalidArgument, msg); }

int nthreads(int t) { return t <= 0 ? default_threads() : t; }

inline uint8_t requant(float y, float inv, float zero) {
  float t = std::nearbyint(y * inv) + zero;
  if (!(t >= 0.f)) t = 0.f;  // also NaN
  if (t > 255.f) t = 255.f;
  return static_cast<uint8_t>(t);
}

// out[c] = max(out[c], in[c]); restrict (the buffers never overlap) lets the compiler vectorise it.
void max_into(uint8_t* __restrict out, const uint8_t* __restrict in, int64_t C) {
  for (int64_t c = 0; c < C; ++c) out[c] = in[c] > out[c] ? in[c] : out[c];
}

void add_into(int32_t* __restrict acc, const uint8_t* __restrict in, int64_t C) {
  for (int64_t c = 0; c < C; ++c) acc[c] += in[c];
}

void clamp_range(const uint8_t* __restrict x, uint8_t* __restrict y, int64_t n, uint8_t lo, uint8_t hi) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t v = x[i] < lo ? lo : x[i];
    y[i] = v > hi ? hi : v;
  }
}

void check_out(float out_scale, int32_t out_zero, const char* what) {
  if (out_scale < 0.f || !std::isfinite(out_scale)) bad(std::string(what) + ": out_scale must be >= 0 and finite");
  if (out_scale > 0.f && (out_zero < 0 || out_zero > 255)) bad(std::string(what) + ": out_zero must be in [0, 255]");
}

}  // namespace

void q8_max_pool2d(const uint8_t* x, uint8_t* y, const Pool2dShape& s, int threads) {
  if (s.oh < 1 || s.ow < 1) bad("q8_max_pool2d: output size not set (pool2d_output_size)");
  const int64_t C = s.c;
  parallel_for(s.n * s.oh, nthreads(threads), std::max<int64_t>(1, 16384 / std::max<int64_t>(s.ow * C, 1)),
               [&](int64_t r0, int64_t r1) {
                 for (int64_t r = r0; r < r1; ++r) {
                   const int64_t n = r / s.oh, oh = r % s.oh;
                   const int64_t h0 = std::max<int64_t>(oh * s.sh - s.pt, 0),
                                 h1 = std::min<int64_t>(oh * s.sh - s.pt + s.kh, s.h);
                   for (int64_t ow = 0; ow < s.ow; ++ow) {
                     const int64_t w0 = std::max<int64_t>(ow * s.sw - s.pl, 0),
                                   w1 = std::min<int64_t>(ow * s.sw - s.pl + s.kw, s.w);
                     uint8_t* out = y + (r * s.ow + ow) * C;
                     std::memset(out, 0, C);
                     for (int64_t ih = h0; ih < h1; ++ih)
                       for (int64_t iw = w0; iw < w1; ++iw) {
                         max_into(out, x + ((n * s.h + ih) * s.w + iw) * C, C);
                       }
                   }
                 }
               });
}

void q8_global_avg_pool(const uint8_t* x, int64_t n, int64_t hw, int64_t c, float scale, int32_t zero,
                        float out_scale, int32_t out_zero, void* y, int threads) {
  if (n < 0 || hw < 1 || c < 1) bad("q8_global_avg_pool: bad sizes");
  if (hw > (int64_t{1} << 23)) bad("q8_global_avg_pool: more than 2^23 pixels per image");
  check_out(out_scale, out_zero, "q8_global_avg_pool");
  const float mul = scale * (1.f / static_cast<float>(hw));
  const float inv = out_scale > 0.f ? 1.f / out_scale : 1.f, oz = static_cast<float>(out_zero);
  const int32_t zsum = static_cast<int32_t>(hw) * zero;
  parallel_for(n, nthreads(threads), 1, [&](int64_t n0, int64_t n1) {
    std::vector<int32_t> acc(static_cast<size_t>(c));
    for (int64_t i = n0; i < n1; ++i) {
      std::fill(acc.begin(), acc.end(), 0);
      const uint8_t* img = x + i * hw * c;
      for (int64_t p = 0; p < hw; ++p) add_into(acc.data(), img + p * c, c);
      for (int64_t j = 0; j < c; ++j) {
        const float v = static_cast<float>(acc[j] - zsum) * mul;
        if (out_scale > 0.f) static_cast<uint8_t*>(y)[i * c + j] = requant(v, inv, oz);
        else static_cast<float*>(y)[i * c + j] = v;
      }
    }
  });
}

void q8_add(const uint8_t* a, float sa, int32_t za, const uint8_t* b, float sb, int32_t zb, int64_t count, Act act,
            float out_scale, int32_t out_zero, void* y, int threads) {
  if (count < 0) bad("q8_add: negative count");
  if (act != Act::None && act != Act::Relu && act != Act::Relu6) bad("q8_add: only none / relu / relu6");
  check_out(out_scale, out_zero, "q8_add");
  const float inv = out_scale > 0.f ? 1.f / out_scale : 1.f, oz = static_cast<float>(out_zero);
  const float fza = static_cast<float>(za), fzb = static_cast<float>(zb);
  // Per-code dequantization tables: the products are exactly those of the formula.
  float ta[256], tb[256];
  for (int q = 0; q < 256; ++q) {
    ta[q] = (static_cast<float>(q) - fza) * sa;
    tb[q] = (static_cast<float>(q) - fzb) * sb;
  }
  parallel_for(count, nthreads(threads), 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float v = ta[a[i]] + tb[b[i]];
      if (act == Act::Relu) v = v < 0.f ? 0.f : v;
      else if (act == Act::Relu6) v = v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
      if (out_scale > 0.f) static_cast<uint8_t*>(y)[i] = requant(v, inv, oz);
      else static_cast<float*>(y)[i] = v;
    }
  });
}

void q8_lut(const uint8_t* x, int64_t count, const uint8_t* table, uint8_t* y, int threads) {
  if (count < 0) bad("q8_lut: negative count");
  parallel_for(count, nthreads(threads), 65536, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = table[x[i]];
  });
}

void q8_clamp(const uint8_t* x, int64_t count, uint8_t lo, uint8_t hi, uint8_t* y, int threads) {
  if (count < 0) bad("q8_clamp: negative count");
  parallel_for(count, nthreads(threads), 65536, [&](int64_t i0, int64_t i1) {
    clamp_range(x + i0, y + i0, i1 - i0, lo, hi);
  });
}

}  // namespace slimrt::kernels

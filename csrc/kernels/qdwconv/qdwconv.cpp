// int8 depthwise convolution driver: packing, checks, ISA table, threading over output rows.
#include "kernels/qdwconv/qdwconv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/threadpool.h"
#include "kernels/qdwconv/qdwconv_internal.h"

namespace slimrt::kernels {
namespace {

[[noreturn]] void bad(const std::string& msg) { fail(Code::InvalidArgument, msg); }

detail::Q8DwRowsFn rows_for(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return detail::scalar::q8dw_rows;
    case Isa::Avx2: return detail::avx2::q8dw_rows;
    case Isa::Avx512: return detail::avx512::q8dw_rows;
    default: return detail::vnni::q8dw_rows;  // Avx512Vnni, Amx
  }
}

}  // namespace

std::unique_ptr<PackedQ8Dw> pack_q8_dw(const int8_t* wq, int64_t C, int kh, int kw, Isa isa) {
  if (C < 1 || kh < 1 || kw < 1 || kh > 64 || kw > 64) bad("pack_q8_dw: bad weight shape");
  if (!wq) bad("pack_q8_dw: null weights");
  if (!isa_supported(isa)) fail(Code::Unsupported, std::string("ISA ") + isa_name(isa) + " is not supported here");
  auto p = std::make_unique<PackedQ8Dw>();
  p->C = C;
  p->Cp = (C + 15) / 16 * 16;
  p->kh = kh;
  p->kw = kw;
  p->isa = isa;
  const int64_t taps = static_cast<int64_t>(kh) * kw;
  p->w = aligned_array<int32_t>(taps * p->Cp);
  p->wsum = aligned_array<int32_t>(p->Cp);
  std::memset(p->w.get(), 0, sizeof(int32_t) * taps * p->Cp);
  std::memset(p->wsum.get(), 0, sizeof(int32_t) * p->Cp);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < taps; ++t) {
      p->w[t * p->Cp + c] = wq[c * taps + t];
      p->wsum[c] += wq[c * taps + t];
    }
  if (isa != Isa::Scalar && isa != Isa::Avx2 && isa != Isa::Avx512) {  // VNNI layout (qdwconv.h)
    const int64_t blocks = (C + 63) / 64, G = (kh + 3) / 4;
    const size_t bytes = static_cast<size_t>(blocks * G * kw * 4 * 64);
    p->w4 = aligned_array<int8_t>(bytes);
    std::memset(p->w4.get(), 0, bytes);
    // 16 or 32 channels: lanes C.. of the one block repeat the channels (lane l holds channel l % C),
    // for the kernel's several-pixels-per-vector form (stride 1); other strides never store them.
    const int64_t lanes = (C == 16 || C == 32) ? 64 : C;
    for (int64_t l = 0; l < lanes; ++l) {
      const int64_t c = l % C, blk = l / 64, cl = l % 64, L = cl / 16, q = (cl % 16) / 4, i = cl % 4;
      for (int kr = 0; kr < kh; ++kr)
        for (int kc = 0; kc < kw; ++kc) {
          const int64_t g = kr / 4, b = kr % 4;
          p->w4[(((blk * G + g) * kw + kc) * 4 + q) * 64 + 4 * (4 * L + i) + b] = wq[(c * kh + kr) * kw + kc];
        }
    }
  }
  return p;
}

namespace {

// Validates the call and fills the row functions' arguments.
detail::Q8DwArgs q8dw_args(const DwConv2dShape& s, const uint8_t* x, const PackedQ8Dw& w, const Q8DwEpilogue& ep,
                           void* y) {
  if (s.mult != 1 || s.c != w.C || s.kh != w.kh || s.kw != w.kw) bad("q8_dwconv2d: shape does not match the weights");
  if (s.n < 0 || s.oh < 1 || s.ow < 1) bad("q8_dwconv2d: output size not set (dwconv2d_output_size)");
  if (!x || !y || !ep.mul) bad("q8_dwconv2d: null operand");
  if (ep.x_zero < 0 || ep.x_zero > 255) bad("q8_dwconv2d: x_zero must be in [0, 255]");
  if (ep.act != Act::None && ep.act != Act::Relu && ep.act != Act::Relu6 && ep.act != Act::LeakyRelu)
    bad("q8_dwconv2d: only none / relu / relu6 / leaky_relu run in the epilogue");
  if (ep.out_scale < 0.f || !std::isfinite(ep.out_scale)) bad("q8_dwconv2d: out_scale must be >= 0 and finite");
  if (ep.out_scale > 0.f && (ep.out_zero < 0 || ep.out_zero > 255)) bad("q8_dwconv2d: out_zero must be in [0, 255]");
  if (ep.residual && ep.residual_u8) bad("q8_dwconv2d: give a float or a u8 residual, not both");
  if ((ep.residual || ep.residual_u8) && ep.ldr < s.c) bad("q8_dwconv2d: residual ldr < C");
  if (!isa_supported(w.isa)) fail(Code::Unsupported, std::string("ISA ") + isa_name(w.isa) + " is not supported here");
  detail::Q8DwArgs a;
  a.s = &s;
  a.x = x;
  a.w = w.w.get();
  a.ldw = w.Cp;
  a.wsum = w.wsum.get();
  a.w4 = w.w4.get();
  a.x_zero = ep.x_zero;
  a.mul = ep.mul;
  a.bias = ep.bias;
  a.residual = ep.residual;
  a.residual_u8 = ep.residual_u8;
  a.res_scale = ep.res_scale;
  a.res_zero = static_cast<float>(ep.res_zero);
  a.ldr = ep.ldr;
  a.act = ep.act;
  a.alpha = ep.alpha;
  a.out_u8 = ep.out_scale > 0.f;
  a.inv_out_scale = a.out_u8 ? 1.f / ep.out_scale : 1.f;
  a.out_zero = static_cast<float>(ep.out_zero);
  a.y = y;
  return a;
}

}  // namespace

void q8_dwconv2d_rows(const DwConv2dShape& s, const uint8_t* x, const PackedQ8Dw& w, const Q8DwEpilogue& ep, void* y,
                      int64_t r0, int64_t r1) {
  if (ep.residual || ep.residual_u8) bad("q8_dwconv2d_rows: no residual");
  if (!(ep.out_scale > 0.f)) bad("q8_dwconv2d_rows: u8 output only");
  if (r0 < 0 || r1 > s.n * s.oh || r0 > r1) bad("q8_dwconv2d_rows: rows out of range");
  // The row functions write row r at a.y + r * OW * C bytes: shift the buffer so row r0 lands at y.
  void* yb = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(y) - static_cast<uintptr_t>(r0 * s.ow * s.c));
  detail::Q8DwArgs a = q8dw_args(s, x, w, ep, yb);
  rows_for(w.isa)(a, r0, r1);
}

void q8_dwconv2d(const DwConv2dShape& s, const uint8_t* x, const PackedQ8Dw& w, const Q8DwEpilogue& ep, void* y,
                 int threads) {
  const detail::Q8DwArgs a = q8dw_args(s, x, w, ep, y);
  const detail::Q8DwRowsFn fn = rows_for(w.isa);
  const int64_t rows = s.n * s.oh;
  const int64_t per_row = s.ow * s.c * s.kh * s.kw;
  parallel_for(rows, threads <= 0 ? default_threads() : threads,
               std::max<int64_t>(1, 32768 / std::max<int64_t>(per_row, 1)),
               [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
}

}  // namespace slimrt::kernels

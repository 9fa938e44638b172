// Per-ISA row functions of the int8 depthwise convolution (declarations only: included by the
// baseline driver and the ISA-suffixed files, so it holds no inline code).
#pragma once
#include <cstdint>

#include "kernels/act.h"
#include "kernels/dwconv/dwconv.h"

namespace slimrt::kernels::detail {

struct Q8DwArgs {
  const DwConv2dShape* s = nullptr;
  const uint8_t* x = nullptr;
  const int32_t* w = nullptr;  // [taps][ldw]
  int64_t ldw = 0;
  const int32_t* wsum = nullptr;
  const void* w4 = nullptr;    // VNNI only: PackedQ8Dw::w4
  int32_t x_zero = 0;
  const float* mul = nullptr;
  const float* bias = nullptr;
  const float* residual = nullptr;
  const uint8_t* residual_u8 = nullptr;
  float res_scale = 1.f, res_zero = 0.f;
  int64_t ldr = 0;
  Act act = Act::None;
  float alpha = 0.f;
  bool out_u8 = false;
  float inv_out_scale = 1.f, out_zero = 0.f;
  void* y = nullptr;
};

// Output rows [r0, r1) of the flattened (n, oh) index.
using Q8DwRowsFn = void (*)(const Q8DwArgs& a, int64_t r0, int64_t r1);

namespace scalar {
void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1);
// Channels [c0, c1) only (the SIMD files' tail).
void q8dw_rows_channels(const Q8DwArgs& a, int64_t r0, int64_t r1, int64_t c0, int64_t c1);
}  // namespace scalar
namespace avx2 {
void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1);
}
namespace avx512 {
void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1);
}
namespace vnni {
void q8dw_rows(const Q8DwArgs& a, int64_t r0, int64_t r1);
}

}  // namespace slimrt::kernels::detail

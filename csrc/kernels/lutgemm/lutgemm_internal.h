// Interface between the baseline LUT-GEMM driver (lutgemm.cpp) and the per-ISA
// decode kernels (lutgemm_<isa>.cpp). POD structs and declarations only: this
// header is included by files compiled with different -m flags.
#pragma once
#include <cstdint>

namespace slimrt::kernels::detail {

// The packed layout described in lutgemm.h.
struct LutView {
  const uint8_t* idx;   // [Npad][row_bytes]
  const float* lut;     // [per_row ? Npad : 1][table]
  int64_t row_bytes;
  int sb;               // 1, 2, 4 or 8
  int table;            // 16 or 256
  bool per_row;
};

// out[q*ldo + (n - n0)] = sum_k lut[g(n)][idx[n][k]] * xs[q*ldx + k] for q < p (1..4) and
// n in [n0, n1): n0 and n1 multiples of 4 (<= Npad); xs rows hold nblocks * kblock floats
// (zero past K).
using LutRowsFn = void (*)(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, int p,
                           float* out, int64_t ldo);

namespace avx2 {
constexpr int kLutLanes = 8;
void lut_rows(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, int p, float* out,
              int64_t ldo);
}  // namespace avx2
namespace avx512 {
constexpr int kLutLanes = 16;
void lut_rows(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, int p, float* out,
              int64_t ldo);
}  // namespace avx512

}  // namespace slimrt::kernels::detail

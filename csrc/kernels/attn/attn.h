// Multi-head attention, one (batch, head) at a time: softmax(q k^T * scale + mask) v, in fp32 or,
// as the user chooses (`attention` op with int8=1), with both matrix products on int8 codes.
//
//   q, k, v rows: [Sq][D], [Sk][D], [Sk][D] floats (rows ldq/ldk/ldv apart: a head's columns of
//   the head-interleaved projections); y [Sq][D] (rows ldy apart). Workspace: attention_head_workspace.
//
// fp32: k is transposed into the workspace, scores = q k^T by a register-blocked FMA kernel (4 query
//   rows x 4 (AVX-512) / 2 (AVX2) vectors of keys), the eltwise softmax in place, y = P v (4 rows x
//   the head's columns). No packing of q, P or v, no allocation: the sgemm driver's per-call packing
//   and workspace cost more than these 128x128x32 products themselves.
// int8: codes use rint (ties to even), computed in float:
//     K, Q per row (per token):     s = max_d |x| / 127,  c = rint(x * (127 / max_d |x|))  in [-127, 127]
//     V per column (per channel d): s = max_j |v[j][d]| / 127, codes likewise
//     scores[i][j] = float(sum_d cq[i][d] * ck[j][d]) * (sq[i] * sk[j])
//     P = softmax(scores * scale + mask row)            (fp32, the eltwise softmax kernel)
//     P per row:                    sp = max_j P / 255,  cp = rint(P * (255 / max_j P)) in [0, 255]
//     y[i][d] = float(sum_j cp[i][j] * cv[j][d]) * (sp[i] * sv[d])
//   A zero row/column gets scale 0 (codes 0); a non-finite one scale NaN (NaN out, as in fp32).
//   Kernels: avx512vnni vpdpbusd (q codes offset by +128 into u8, corrected with 128 * sum_d ck[j][d];
//   P codes are u8 already), avx2 (also used for plain avx512) vpmaddwd on int16 codes (exact, no
//   vpmaddubsw saturation), scalar reference loops. Every ISA gives the same integers; the float
//   steps differ only in the softmax kernel's rounding.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/cpu.h"
#include "kernels/eltwise/eltwise.h"

namespace slimrt::kernels {

constexpr int64_t kQ8AttnMaxLen = 65536;  // int8: Sk and D bound, keeps every int32 sum exact

struct AttnHead {
  int64_t Sq = 0, Sk = 0, D = 0;
  const float *q = nullptr, *k = nullptr, *v = nullptr;
  int64_t ldq = 0, ldk = 0, ldv = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  float scale = 1.f;   // applied to the scores inside the softmax
  SoftmaxMask mask;    // row i of the scores uses the mask row of i (div/mod as in SoftmaxMask)
};

// Workspace bytes one head needs (64-byte aligned buffer).
size_t attention_head_workspace(int64_t Sq, int64_t Sk, int64_t D, bool int8);
// One head, on the calling thread. Throws InvalidArgument for int8 with Sk or D above
// kQ8AttnMaxLen, Unsupported when the CPU lacks `isa`.
void attention_head(const AttnHead& h, bool int8, void* ws, Isa isa);
// The kernel family run for `isa`: "avx512vnni", "avx512", "avx2" or "scalar".
const char* attention_isa(Isa isa, bool int8);

namespace detail {
struct AttnKernels {
  const char* isa;
  void (*head)(const AttnHead& h, void* ws, const EltwiseKernels& kt);
};
const AttnKernels& attn_f32_scalar();
const AttnKernels& attn_f32_avx2();
const AttnKernels& attn_f32_avx512();
const AttnKernels& attn_q8_scalar();
const AttnKernels& attn_q8_avx2();
const AttnKernels& attn_q8_vnni();
// int8 workspace layout shared by every ISA (group G of the reduction dim: 4 for vnni, 2 otherwise).
size_t q8attn_ws_bytes(int64_t Sq, int64_t Sk, int64_t D, int G, size_t code_bytes);
}  // namespace detail

}  // namespace slimrt::kernels

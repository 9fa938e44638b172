// AVX-512 VNNI int8 GEMM tiles with the static u8 requantization fused in (the hot path of
// static int8 chains: every 1x1 / im2col / implicit-im2col convolution and dense layer whose
// output is u8 with one per-tensor activation (scale, zero)).
//
// The driver runs the VNNI microkernel (qgemm_vnni.cpp, tiles 8x48, 6x64, 12x32, 16x16, direct or
// indirect A) into its local (L1) tile buffer, then this epilogue adds -a_zero * colsum[n] (the same
// int32 sum, wrapping alike) and goes straight to the u8 output, per row with column terms computed
// once per panel by the driver:
//   y = fma(float(acc), a_scale * w_scale[n], bias[n])         (as avx512 static_tile_epilogue)
//   y += (float(res_u8) - res_zero) * res_scale                  (u8 residual: mul, then add)
//   y = y < 0 ? alpha * y : y                                    (leaky_relu only)
//   t = y * inv_out_scale; relu: t = max(0, t); t = min(hi, t)   (hi = 512, relu6: min(512, 6 * inv))
//   q = packus(adds(packs(cvtps2dq(t)), out_zero))
// which is the byte clamp(rint(act(y) * inv) + out_zero, 0, 255) of every other ISA, bit for bit:
// inv > 0, so max(0, y) * inv = max(0, y * inv) and min(6, y) * inv rounds to min(6 * inv, y * inv)
// (rounding is monotonic); cvtps2dq rounds to nearest even like rint; the signed dword -> word pack
// saturates values that are already <= 512 (NaN and -inf give INT_MIN -> -32768), the saturating
// word add of out_zero and the unsigned byte pack clamp to [0, 255]. NaN stays NaN through
// max/min (operand order), hence 0, like the scalar path.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/qgemm/qgemm_internal.h"

namespace slimrt::kernels::detail::vnni {
namespace {

inline __mmask16 mask16(int left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1u);
}

// The u8 epilogue of one tile: acc [rows][16 * NV] int32 from the VNNI microkernel (qgemm_vnni.cpp,
// raw sums, accumulators started at 0), plus -a_zero * colsum[n] (the same int32 sum, wrapping alike).
template <int NV>
void epilogue(int R, const int32_t* acc, const Q8StaticU8& e) {
  constexpr int NR = 16 * NV;
  // Epilogue, row by row. Measured on Zen 4 (1 thread, relu6, against the generic tile epilogue):
  // 12544 x 16 x 96 (MobileNetV2's first expand) 1.75x, 3136 x 24 x 144 1.65x, K >= 96 1.07-1.25x.
  const __m512 zero = _mm512_setzero_ps(), inv = _mm512_set1_ps(e.inv_out_scale), hi = _mm512_set1_ps(e.hi);
  const __m512 alpha = _mm512_set1_ps(e.alpha);
  const __m512 rz = _mm512_set1_ps(e.res_zero), rs = _mm512_set1_ps(e.res_scale);
  const __m512i oz = _mm512_set1_epi16(static_cast<int16_t>(e.out_zero));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __mmask64 m64 = e.nv >= 64 ? ~static_cast<__mmask64>(0) : (static_cast<__mmask64>(1) << e.nv) - 1;
  const bool lower = e.act == Act::Relu || e.act == Act::Relu6;
  const bool leaky = e.act == Act::LeakyRelu;
  // The column terms in registers: the u8 stores may alias anything, so loads inside the row loop
  // would be repeated for every row.
  __m512i negzc[NV];
  __m512 scale[NV], bias[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) {
    negzc[j] = _mm512_load_si512(e.negzc + 16 * j);
    scale[j] = _mm512_load_ps(e.scale + 16 * j);
    bias[j] = _mm512_load_ps(e.bias + 16 * j);
  }
  uint8_t* const out = e.out;
  const uint8_t* const res_u8 = e.residual_u8;
  const int64_t ldo = e.ldo, ldr = e.ldr;
  const int nv = e.nv;
  for (int r = 0; r < R; ++r) {
    __m512i q[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      const __m512i a = _mm512_add_epi32(_mm512_loadu_si512(acc + r * NR + 16 * j), negzc[j]);
      __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), scale[j], bias[j]);
      if (res_u8) {
        const __m512 rq = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask16(nv - 16 * j), res_u8 + r * ldr + 16 * j)));
        y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_sub_ps(rq, rz), rs));
      }
      if (leaky) y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), y, alpha);
      __m512 t = _mm512_mul_ps(y, inv);
      if (lower) t = _mm512_max_ps(zero, t);
      q[j] = _mm512_cvtps_epi32(_mm512_min_ps(hi, t));
    }
    __m512i p0 = _mm512_adds_epi16(_mm512_packs_epi32(q[0], q[NV > 1 ? 1 : 0]), oz);
    __m512i p1 = p0;
    if (NV > 2) p1 = _mm512_adds_epi16(_mm512_packs_epi32(q[NV > 2 ? 2 : 0], q[NV > 3 ? 3 : 0]), oz);
    const __m512i bytes = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(p0, p1));
    _mm512_mask_storeu_epi8(out + r * ldo, m64, bytes);
  }
}

}  // namespace

void q8_static_u8_epilogue(int nr, int rows, const int32_t* acc, const Q8StaticU8& e) {
  switch (nr) {
    case 64: epilogue<4>(rows, acc, e); break;
    case 32: epilogue<2>(rows, acc, e); break;
    case 16: epilogue<1>(rows, acc, e); break;
    default: epilogue<3>(rows, acc, e); break;
  }
}

}  // namespace slimrt::kernels::detail::vnni

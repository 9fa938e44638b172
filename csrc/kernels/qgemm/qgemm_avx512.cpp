// AVX-512 (F/BW) int8 GEMM without VNNI, plus the AVX-512 epilogue / quantization loops
// (shared with the VNNI kernel, which runs on AVX-512 machines only).
//
// Microkernel 8x48c2: B panel [Kp/2][48][2] s8. Per K pair: three 32-byte loads of B, each
// sign-extended to 32 int16 (vpmovsxbw), one 32-bit broadcast per row of A (A held as int16
// 0..255, two K values per lane), vpmaddwd (exact int16*int16 pair sums into int32: at most
// 2*255*128) and vpaddd into 8x3 zmm accumulators (24 + 3 + 2 registers). Rows <= 2 use two
// independent accumulator sets over even/odd K pairs to hide the add latency (GEMV). The K loop is
// qgemm_impl.h's (policy Q8C2Avx512 below).
//
// Epilogue: float tiles of <= 64 columns keep the column terms (colsum, w_scale, bias) in
// registers for the whole tile and apply every activation in registers (vmath.h, one
// instantiation per Act); per-tensor u8 / float tiles with an inline activation take the static
// path; everything else the general loop. Quantization: 64 floats per iteration through the
// integer rounding of quant_int and two saturating packs, one 64-byte store.
// gcc 12's AVX-512 headers self-initialise their "undefined" vectors (__Y = __Y), which
// -Wall reports at -O3 (GCC bug 105593): silence that false positive for this file only.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/eltwise/vec_avx512.h"
#include "kernels/eltwise/vmath.h"
#include "kernels/qgemm/qgemm_internal.h"

namespace slimrt::kernels::detail::avx512 {

#include "kernels/qgemm/qgemm_impl.h"

namespace {

// The microkernel's policy (qgemm_impl.h): 16 int32 lanes; a B vector is 32 s8 (16 columns x 2 K)
// sign-extended to int16; vpmaddwd + vpaddd.
struct Q8C2Avx512 {
  using I = __m512i;
  using A = int16_t;
  static constexpr int W = 16, kAStep = 2, kBBytes = 32, kSplit = 6;  // two sets for rows <= 2
  static I zero() { return _mm512_setzero_si512(); }
  static I bcast(int32_t v) { return _mm512_set1_epi32(v); }
  static I load_b(const int8_t* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static I dot(I c, I a, I b) { return _mm512_add_epi32(c, _mm512_madd_epi16(a, b)); }
  static I add(I a, I b) { return _mm512_add_epi32(a, b); }
  static void store(int32_t* p, I v) { _mm512_storeu_si512(p, v); }
};

inline __m512 quant16(__m512 y, __m512 inv, __m512 zero) {
  __m512 t = _mm512_roundscale_ps(_mm512_mul_ps(y, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  t = _mm512_add_ps(t, zero);
  t = _mm512_max_ps(t, _mm512_setzero_ps());  // NaN -> 0 (max returns the second operand)
  return _mm512_min_ps(t, _mm512_set1_ps(255.f));
}

// Saturating int32 -> u8 of 16 lanes, masked store. The register form of vpmovusdb plus a
// masked 16-byte store: the memory form (vpmovusdb m128{k}, zmm), which gcc otherwise folds the
// pair into, is microcoded and slow on Zen 4 (it was a third of the int8 GEMM epilogue's time).
// The empty asm pins the packed bytes in a register so the two instructions stay separate.
inline void store_u8x16(uint8_t* p, __mmask16 m, __m512i v) {
  __m128i b = _mm512_cvtusepi32_epi8(v);
  __asm__("" : "+v"(b));
  _mm_mask_storeu_epi8(p, m, b);
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

}  // namespace

void q8_gemm_8x48c2(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  q8_dispatch<Q8C2Avx512, 3, 8>(kgroups, a, lda, rows, b, acc);
}

namespace {
// quant16 in integers, for results that leave through the two saturating packs below:
// cvt(min(512, y * inv)) + zero. cvtps2dq rounds to nearest even like vrndscaleps, the sum is
// exact, and the packs clamp to [0, 255] (values stay below 512 + 255 < 2^15, so the signed
// word pack never wraps): the same byte as clamp(rint(y * inv) + zero, 0, 255) for every y,
// including NaN (min returns its second operand, the NaN; cvt gives INT_MIN -> 0) and +-inf.
inline __m512i quant_int(__m512 y, __m512 inv, __m512i zero) {
  const __m512 t = _mm512_min_ps(_mm512_set1_ps(512.f), _mm512_mul_ps(y, inv));
  return _mm512_add_epi32(_mm512_cvtps_epi32(t), zero);
}

// Per-tensor activation parameters (static quantization), float or u8 output, <= 64 columns:
// the column terms a_zero * colsum, a_scale * w_scale and bias are computed once per tile, and
// a u8 row leaves as one 64-byte store (two pack levels, then a dword permutation back to
// column order). The same operations per element as the general loop below.
void static_tile_epilogue(const Q8Tile& t) {
  const __m512 zero_v = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f), alpha = _mm512_set1_ps(t.alpha);
  const __m512 inv_os = _mm512_set1_ps(t.inv_out_scale);
  const __m512 res_zero = _mm512_set1_ps(t.res_zero), res_scale = _mm512_set1_ps(t.res_scale);
  const __m512i za = _mm512_set1_epi32(t.a_zero[0]);
  const __m512 as = _mm512_set1_ps(t.a_scale ? t.a_scale[0] : 1.f);
  const int nvec = (t.nv + 15) / 16;
  __m512i zc[4];
  __m512 sc[4], bias[4];
  __mmask16 mk[4];
  for (int v = 0; v < 4; ++v) {
    mk[v] = v < nvec ? tail_mask(t.nv - 16 * v) : 0;
    zc[v] = _mm512_mullo_epi32(za, _mm512_maskz_loadu_epi32(mk[v], t.colsum + 16 * v));
    sc[v] = _mm512_mul_ps(as, _mm512_maskz_loadu_ps(mk[v], t.w_scale + 16 * v));
    bias[v] = t.bias ? _mm512_maskz_loadu_ps(mk[v], t.bias + 16 * v) : zero_v;
  }
  const __mmask64 m64 = t.nv >= 64 ? ~static_cast<__mmask64>(0) : (static_cast<__mmask64>(1) << t.nv) - 1;
  // dword d of the packed row (4 columns) sits at lane d % 4, dword d / 4 of the packs' output
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const bool u8 = t.kind == Q8Out::U8;
  const __m512i ozi = _mm512_set1_epi32(static_cast<int32_t>(t.out_zero));
  for (int r = 0; r < t.rows; ++r) {
    const int32_t* acc = t.acc + r * t.ldacc;
    __m512i q[4];
    for (int v = 0; v < 4; ++v) {
      if (v >= nvec) {
        q[v] = _mm512_setzero_si512();
        continue;
      }
      const __m512i corr = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(mk[v], acc + 16 * v), zc[v]);
      __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(corr), sc[v], bias[v]);
      if (t.residual) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mk[v], t.residual + r * t.ldr + 16 * v));
      if (t.residual_u8) {
        const __m512 rq = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk[v], t.residual_u8 + r * t.ldr + 16 * v)));
        y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_sub_ps(rq, res_zero), res_scale));
      }
      switch (t.act) {
        case Act::Relu: y = _mm512_max_ps(zero_v, y); break;
        case Act::Relu6: y = _mm512_min_ps(six, _mm512_max_ps(zero_v, y)); break;
        case Act::LeakyRelu:
          y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, zero_v, _CMP_LT_OQ), y, alpha);
          break;
        default: break;
      }
      if (!u8) {
        _mm512_mask_storeu_ps(static_cast<float*>(t.out) + r * t.ldo + 16 * v, mk[v], y);
        continue;
      }
      q[v] = quant_int(y, inv_os, ozi);
    }
    if (u8) {
      const __m512i b = _mm512_packus_epi16(_mm512_packus_epi32(q[0], q[1]), _mm512_packus_epi32(q[2], q[3]));
      _mm512_mask_storeu_epi8(static_cast<uint8_t*>(t.out) + r * t.ldo, m64, _mm512_permutexvar_epi32(order, b));
    }
  }
}
// The activations other than none/relu/relu6/leaky_relu, in registers: the vmath.h functions,
// i.e. the values apply_act_inplace(isa >= avx512) gives.
__m512 act_other(__m512 y, Act act, __m512 alpha) {
  switch (act) {
    case Act::Sigmoid: return act_apply<VecAvx512, Act::Sigmoid>(y, alpha);
    case Act::Tanh: return act_apply<VecAvx512, Act::Tanh>(y, alpha);
    case Act::Gelu: return act_apply<VecAvx512, Act::Gelu>(y, alpha);
    case Act::GeluTanh: return act_apply<VecAvx512, Act::GeluTanh>(y, alpha);
    case Act::Silu: return act_apply<VecAvx512, Act::Silu>(y, alpha);
    case Act::HardSwish: return act_apply<VecAvx512, Act::HardSwish>(y, alpha);
    case Act::Elu: return act_apply<VecAvx512, Act::Elu>(y, alpha);
    case Act::HardSigmoid: return act_apply<VecAvx512, Act::HardSigmoid>(y, alpha);
    default: return y;
  }
}
// One activation on 16 lanes, fixed at compile time: the general loop's operations for the inline
// ones, the vmath.h function for the others.
template <Act A>
inline __m512 act_fixed(__m512 y, __m512 alpha) {
  const __m512 zero_v = _mm512_setzero_ps();
  if constexpr (A == Act::None) return y;
  else if constexpr (A == Act::Relu) return _mm512_max_ps(zero_v, y);
  else if constexpr (A == Act::Relu6) return _mm512_min_ps(_mm512_set1_ps(6.f), _mm512_max_ps(zero_v, y));
  else if constexpr (A == Act::LeakyRelu) return _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, zero_v, _CMP_LT_OQ), y, alpha);
  else return act_apply<VecAvx512, A>(y, alpha);
}

// Float output, <= 64 columns, per-row (or per-tensor) activation parameters, no u8 residual: the
// column terms (colsum, w_scale, bias) are loaded once per tile and stay in registers; per row
// and vector: acc - a_zero * colsum, convert, fma with a_scale * w_scale and the bias, the
// residual, the activation. The same operations per element as the general loop in q8_epilogue.
template <Act A>
void f32_tile_epilogue(const Q8Tile& t) {
  const __m512 alpha = _mm512_set1_ps(t.alpha);
  const int nvec = (t.nv + 15) / 16;
  __m512i cs[4];
  __m512 ws[4], bias[4];
  __mmask16 mk[4];
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    mk[v] = v < nvec ? tail_mask(t.nv - 16 * v) : 0;
    cs[v] = _mm512_maskz_loadu_epi32(mk[v], t.colsum + 16 * v);
    ws[v] = _mm512_maskz_loadu_ps(mk[v], t.w_scale + 16 * v);
    bias[v] = t.bias ? _mm512_maskz_loadu_ps(mk[v], t.bias + 16 * v) : _mm512_setzero_ps();
  }
  for (int r = 0; r < t.rows; ++r) {
    const __m512i za = _mm512_set1_epi32(t.a_zero[r * t.a_step]);
    const __m512 as = _mm512_set1_ps(t.a_scale ? t.a_scale[r * t.a_step] : 1.f);
    const int32_t* acc = t.acc + r * t.ldacc;
    float* out = static_cast<float*>(t.out) + r * t.ldo;
    const float* res = t.residual ? t.residual + r * t.ldr : nullptr;
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      if (v >= nvec) break;
      const __m512i corr = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(mk[v], acc + 16 * v), _mm512_mullo_epi32(za, cs[v]));
      __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(corr), _mm512_mul_ps(as, ws[v]), bias[v]);
      if (res) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mk[v], res + 16 * v));
      _mm512_mask_storeu_ps(out + 16 * v, mk[v], act_fixed<A>(y, alpha));
    }
  }
}

void f32_tile_epilogue_any(const Q8Tile& t) {
  switch (t.act) {
    case Act::None: return f32_tile_epilogue<Act::None>(t);
    case Act::Relu: return f32_tile_epilogue<Act::Relu>(t);
    case Act::Relu6: return f32_tile_epilogue<Act::Relu6>(t);
    case Act::LeakyRelu: return f32_tile_epilogue<Act::LeakyRelu>(t);
    case Act::Sigmoid: return f32_tile_epilogue<Act::Sigmoid>(t);
    case Act::Tanh: return f32_tile_epilogue<Act::Tanh>(t);
    case Act::Gelu: return f32_tile_epilogue<Act::Gelu>(t);
    case Act::GeluTanh: return f32_tile_epilogue<Act::GeluTanh>(t);
    case Act::Silu: return f32_tile_epilogue<Act::Silu>(t);
    case Act::HardSwish: return f32_tile_epilogue<Act::HardSwish>(t);
    case Act::Elu: return f32_tile_epilogue<Act::Elu>(t);
    case Act::HardSigmoid: return f32_tile_epilogue<Act::HardSigmoid>(t);
  }
}
}  // namespace

void q8_epilogue(const Q8Tile& tile) {
  // A local copy: the u8 stores below may alias anything, which would make every field of a
  // referenced tile a reload per vector.
  const Q8Tile t = tile;
  const __m512 zero_v = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f), alpha = _mm512_set1_ps(t.alpha);
  const __m512 inv_os = _mm512_set1_ps(t.inv_out_scale), oz = _mm512_set1_ps(t.out_zero);
  const __m512 res_zero = _mm512_set1_ps(t.res_zero), res_scale = _mm512_set1_ps(t.res_scale);
  const bool simple_act = t.act == Act::None || t.act == Act::Relu || t.act == Act::Relu6 || t.act == Act::LeakyRelu;
  if (t.kind != Q8Out::Acc32 && t.a_step == 0 && t.nv <= 64 && simple_act) {
    static_tile_epilogue(t);
    return;
  }
  if (t.kind == Q8Out::F32 && t.nv <= 64 && !t.residual_u8) {
    f32_tile_epilogue_any(t);
    return;
  }
  for (int r = 0; r < t.rows; ++r) {
    const __m512i za = _mm512_set1_epi32(t.a_zero[r * t.a_step]);
    const __m512 as = _mm512_set1_ps(t.a_scale ? t.a_scale[r * t.a_step] : 1.f);
    const int32_t* acc = t.acc + r * t.ldacc;
    for (int j = 0; j < t.nv; j += 16) {
      const __mmask16 m = tail_mask(t.nv - j);
      const __m512i corr = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(m, acc + j),
                                            _mm512_mullo_epi32(za, _mm512_maskz_loadu_epi32(m, t.colsum + j)));
      if (t.kind == Q8Out::Acc32) {
        _mm512_mask_storeu_epi32(static_cast<int32_t*>(t.out) + r * t.ldo + j, m, corr);
        continue;
      }
      const __m512 s = _mm512_mul_ps(as, _mm512_maskz_loadu_ps(m, t.w_scale + j));
      const __m512 bias = t.bias ? _mm512_maskz_loadu_ps(m, t.bias + j) : zero_v;
      __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(corr), s, bias);
      if (t.residual) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, t.residual + r * t.ldr + j));
      if (t.residual_u8) {
        const __m512 rq = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, t.residual_u8 + r * t.ldr + j)));
        y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_sub_ps(rq, res_zero), res_scale));
      }
      switch (t.act) {
        case Act::Relu: y = _mm512_max_ps(zero_v, y); break;
        case Act::Relu6: y = _mm512_min_ps(six, _mm512_max_ps(zero_v, y)); break;
        case Act::LeakyRelu:
          y = _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, zero_v, _CMP_LT_OQ), y, alpha);
          break;
        case Act::None: break;
        default: y = act_other(y, t.act, alpha); break;
      }
      if (t.kind == Q8Out::F32) {
        _mm512_mask_storeu_ps(static_cast<float*>(t.out) + r * t.ldo + j, m, y);
      } else {
        const __m512i q = _mm512_cvtps_epi32(quant16(y, inv_os, oz));
        store_u8x16(static_cast<uint8_t*>(t.out) + r * t.ldo + j, m, q);
      }
    }
  }
}

// Blocks of 64 go through quant_int and two saturating packs (the same bytes as quant16, see
// quant_int) and leave as one 64-byte store; the tail 16 at a time, masked.
void q8_quantize_u8(const float* x, int64_t n, float inv_scale, float zero, void* out) {
  uint8_t* q = static_cast<uint8_t*>(out);
  const __m512 inv = _mm512_set1_ps(inv_scale), z = _mm512_set1_ps(zero);
  const __m512i zi = _mm512_set1_epi32(static_cast<int32_t>(zero));
  // dword d of the packed block (4 bytes) sits at lane d % 4, dword d / 4 of the packs' output
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i a = quant_int(_mm512_loadu_ps(x + i), inv, zi), b = quant_int(_mm512_loadu_ps(x + i + 16), inv, zi);
    const __m512i c = quant_int(_mm512_loadu_ps(x + i + 32), inv, zi), d = quant_int(_mm512_loadu_ps(x + i + 48), inv, zi);
    const __m512i p = _mm512_packus_epi16(_mm512_packus_epi32(a, b), _mm512_packus_epi32(c, d));
    _mm512_storeu_si512(q + i, _mm512_permutexvar_epi32(order, p));
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i v = _mm512_cvtps_epi32(quant16(_mm512_maskz_loadu_ps(m, x + i), inv, z));
    store_u8x16(q + i, m, v);
  }
}

void q8_quantize_i16(const float* x, int64_t n, float inv_scale, float zero, void* out) {
  int16_t* q = static_cast<int16_t*>(out);
  const __m512 inv = _mm512_set1_ps(inv_scale), z = _mm512_set1_ps(zero);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i v = _mm512_cvtps_epi32(quant16(_mm512_maskz_loadu_ps(m, x + i), inv, z));
    __m256i w = _mm512_cvtepi32_epi16(v);
    __asm__("" : "+v"(w));  // register vpmovdw (see store_u8x16)
    _mm256_mask_storeu_epi16(q + i, m, w);
  }
}

void q8_minmax(const float* x, int64_t n, float* mn, float* mx) {
  __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();  // the range always includes 0
  __m512 lo2 = lo, hi2 = hi;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
    lo = _mm512_min_ps(v0, lo);  // NaN in x is skipped (min/max return the second operand)
    hi = _mm512_max_ps(v0, hi);
    lo2 = _mm512_min_ps(v1, lo2);
    hi2 = _mm512_max_ps(v1, hi2);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);  // masked lanes read 0: in range already
    lo = _mm512_min_ps(v, lo);
    hi = _mm512_max_ps(v, hi);
  }
  *mn = _mm512_reduce_min_ps(_mm512_min_ps(lo, lo2));  // no NaN lanes here
  *mx = _mm512_reduce_max_ps(_mm512_max_ps(hi, hi2));
}

}  // namespace slimrt::kernels::detail::avx512

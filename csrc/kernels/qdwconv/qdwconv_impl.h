// The int8 depthwise convolution's SIMD row kernel and epilogue, written once for every vector
// width, and the per-ISA policies they run on. Included by qdwconv_<isa>.cpp inside its ISA
// namespace (no include guard; everything lands in an anonymous namespace there, so each ISA
// compiles its own copy with its own -m flags). The policy is the one the including file's
// flags select (it includes the matching eltwise/vec_<isa>.h first): Q8DwAvx2 (8 int32 lanes per
// ymm, full vectors; the channels past the last multiple of 8 run the scalar loop) for AVX2 files,
// Q8DwAvx512 (16 lanes per zmm, masked tail) for AVX-512 ones.
//
// A policy V provides (static inline):
//   types   F (W floats), I (W int32), M (lane mask: which of the W channels exist)
//   consts  W (lanes), kMaskedTail (the row kernel covers the last partial block with a mask)
//   ops     the float ones of VecAvx2 / VecAvx512 (zero, set1, fma, add, sub, mul, min, max, round
//           to nearest even), tail(n) (mask of lanes < n), zero_i(), set1_i(i), load_i(p) (64-byte
//           aligned int32), loadu_f(p, m), storeu_f(p, m, x), load_u8(p, m) (W bytes, zero-extended),
//           store_u8(p, m, I) (saturating int32 -> u8), madd(x, w) (vpmaddwd), add_i, sub_i,
//           mullo_i, cvt_f(I), cvt_i(F) (round to nearest even), leaky(y, alpha) (y < 0 ? y * alpha : y)
namespace {

#if !defined(__AVX512F__)
struct Q8DwAvx2 : VecAvx2 {
  using F = __m256;
  using I = __m256i;
  struct M {};  // full vectors only
  static constexpr int W = 8;
  static constexpr bool kMaskedTail = false;
  static M tail(int64_t) { return {}; }
  static I zero_i() { return _mm256_setzero_si256(); }
  static I set1_i(int32_t v) { return _mm256_set1_epi32(v); }
  static I load_i(const int32_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
  static F loadu_f(const float* p, M) { return _mm256_loadu_ps(p); }
  static void storeu_f(float* p, M, F x) { _mm256_storeu_ps(p, x); }
  static I load_u8(const uint8_t* p, M) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static void store_u8(uint8_t* p, M, I v) {
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w, w));
  }
  static I madd(I x, I w) { return _mm256_madd_epi16(x, w); }
  static I add_i(I a, I b) { return _mm256_add_epi32(a, b); }
  static I sub_i(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I mullo_i(I a, I b) { return _mm256_mullo_epi32(a, b); }
  static F cvt_f(I v) { return _mm256_cvtepi32_ps(v); }
  static I cvt_i(F v) { return _mm256_cvtps_epi32(v); }
  static F leaky(F y, F alpha) {
    return _mm256_blendv_ps(y, _mm256_mul_ps(y, alpha), _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ));
  }
};
#else
struct Q8DwAvx512 : VecAvx512 {
  using F = __m512;
  using I = __m512i;
  using M = __mmask16;
  static constexpr int W = 16;
  static constexpr bool kMaskedTail = true;
  static M tail(int64_t left) {
    return left >= 16 ? static_cast<__mmask16>(0xFFFF) : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1u);
  }
  static I zero_i() { return _mm512_setzero_si512(); }
  static I set1_i(int32_t v) { return _mm512_set1_epi32(v); }
  static I load_i(const int32_t* p) { return _mm512_load_si512(p); }
  static F loadu_f(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static void storeu_f(float* p, M m, F x) { _mm512_mask_storeu_ps(p, m, x); }
  static I load_u8(const uint8_t* p, M m) { return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)); }
  // Saturating int32 -> u8 of 16 lanes, masked store. The register form of vpmovusdb plus a
  // masked 16-byte store: the memory form (vpmovusdb m128{k}, zmm), which gcc otherwise folds the
  // pair into, is microcoded and slow on Zen 4 (it was a third of the int8 GEMM epilogue's time).
  // The empty asm pins the packed bytes in a register so the two instructions stay separate.
  static void store_u8(uint8_t* p, M m, I v) {
    __m128i b = _mm512_cvtusepi32_epi8(v);
    __asm__("" : "+v"(b));
    _mm_mask_storeu_epi8(p, m, b);
  }
  static I madd(I x, I w) { return _mm512_madd_epi16(x, w); }
  static I add_i(I a, I b) { return _mm512_add_epi32(a, b); }
  static I sub_i(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I mullo_i(I a, I b) { return _mm512_mullo_epi32(a, b); }
  static F cvt_f(I v) { return _mm512_cvtepi32_ps(v); }
  static I cvt_i(F v) { return _mm512_cvtps_epi32(v); }
  static F leaky(F y, F alpha) {
    return _mm512_mask_mul_ps(y, _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ), y, alpha);
  }
};
#endif

// Epilogue of one pixel's W (masked) channels from the zero-point-corrected int32 sums, the same
// operations as the scalar reference (qdwconv_scalar.cpp), explicit FMAs where it has std::fma.
template <class V>
inline void finish(const Q8DwArgs& a, typename V::I corr, typename V::F mul, typename V::F bias, int64_t p, int64_t c,
                   typename V::M m) {
  const auto zero = V::zero();
  auto y = V::fma(V::cvt_f(corr), mul, bias);
  if (a.residual) y = V::add(y, V::loadu_f(a.residual + p * a.ldr + c, m));
  if (a.residual_u8) {
    const auto rq = V::cvt_f(V::load_u8(a.residual_u8 + p * a.ldr + c, m));
    y = V::fma(V::sub(rq, V::set1(a.res_zero)), V::set1(a.res_scale), y);
  }
  switch (a.act) {
    case Act::Relu: y = V::max(zero, y); break;
    case Act::Relu6: y = V::min(V::set1(6.f), V::max(zero, y)); break;
    case Act::LeakyRelu: y = V::leaky(y, V::set1(a.alpha)); break;
    default: break;
  }
  const int64_t C = a.s->c;
  if (a.out_u8) {
    auto t = V::round(V::mul(y, V::set1(a.inv_out_scale)));
    t = V::add(t, V::set1(a.out_zero));
    t = V::min(V::max(t, zero), V::set1(255.f));  // NaN -> 0
    V::store_u8(static_cast<uint8_t*>(a.y) + p * C + c, m, V::cvt_i(t));
  } else {
    V::storeu_f(static_cast<float*>(a.y) + p * C + c, m, y);
  }
}

// Rows [r0, r1), W channels per vector: per tap the W input bytes are zero-extended to int32
// (vpmovzxbd) and multiplied by the int32-widened weights with vpmaddwd (x's upper int16 is 0, so
// each lane is exactly x * w), then added (vpaddd). KH, KW > 0: compile-time kernel size (the
// weight vectors of a channel block stay in registers along the row); 0: run-time.
template <class V, int KH, int KW>
void rows_impl(const Q8DwArgs& a, int64_t r0, int64_t r1) {
  constexpr int W = V::W;
  const DwConv2dShape& s = *a.s;
  const int kh_n = KH ? KH : s.kh, kw_n = KW ? KW : s.kw;
  const int64_t C = s.c, Cv = V::kMaskedTail ? C : C / W * W;
  const auto zx = V::set1_i(a.x_zero);
  // ow range whose taps are all inside the image horizontally
  int64_t ow_lo = 0, ow_hi = 0;
  {
    int64_t lo = (s.pl + s.sw - 1) / s.sw;
    int64_t hi = s.ow;
    while (hi > lo && (hi - 1) * s.sw - s.pl + (kw_n - 1) * s.dw >= s.w) --hi;
    ow_lo = lo < s.ow ? lo : s.ow;
    ow_hi = hi > ow_lo ? hi : ow_lo;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / s.oh, oh = r % s.oh;
    const uint8_t* xrow[KH ? KH : 64];
    for (int kh = 0; kh < kh_n; ++kh) {
      const int64_t ih = oh * s.sh - s.pt + kh * s.dh;
      xrow[kh] = (ih >= 0 && ih < s.h) ? a.x + (n * s.h + ih) * s.w * C : nullptr;
    }
    for (int64_t c = 0; c < Cv; c += W) {
      const auto m = V::tail(C - c);
      typename V::I wv[KH && KW ? KH * KW : 1];
      if (KH && KW)
        for (int t = 0; t < KH * KW; ++t) wv[t] = V::load_i(a.w + t * a.ldw + c);
      auto wtap = [&](int t) { return (KH && KW) ? wv[t] : V::load_i(a.w + t * a.ldw + c); };
      const auto zsum = V::mullo_i(zx, V::load_i(a.wsum + c));
      const auto mul = V::loadu_f(a.mul + c, m);
      const auto bias = a.bias ? V::loadu_f(a.bias + c, m) : V::zero();
      auto pixel = [&](int64_t ow, bool checked) {
        auto acc = V::zero_i();
        const int64_t iw0 = ow * s.sw - s.pl;
        for (int kh = 0; kh < kh_n; ++kh) {
          const uint8_t* row = xrow[kh];
          for (int kw = 0; kw < kw_n; ++kw) {
            const int64_t iw = iw0 + kw * s.dw;
            typename V::I xv;
            if (row && (!checked || (iw >= 0 && iw < s.w))) xv = V::load_u8(row + iw * C + c, m);
            else xv = zx;
            acc = V::add_i(acc, V::madd(xv, wtap(kh * kw_n + kw)));
          }
        }
        finish<V>(a, V::sub_i(acc, zsum), mul, bias, r * s.ow + ow, c, m);
      };
      for (int64_t ow = 0; ow < ow_lo; ++ow) pixel(ow, true);
      for (int64_t ow = ow_lo; ow < ow_hi; ++ow) pixel(ow, false);
      for (int64_t ow = ow_hi; ow < s.ow; ++ow) pixel(ow, true);
    }
    if (Cv < C) scalar::q8dw_rows_channels(a, r, r + 1, Cv, C);
  }
}

template <class V>
void rows_any(const Q8DwArgs& a, int64_t r0, int64_t r1) {
  if (a.s->kh == 3 && a.s->kw == 3) rows_impl<V, 3, 3>(a, r0, r1);
  else if (a.s->kh == 5 && a.s->kw == 5) rows_impl<V, 5, 5>(a, r0, r1);
  else rows_impl<V, 0, 0>(a, r0, r1);
}

}  // namespace

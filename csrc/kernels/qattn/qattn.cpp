// q8_attention_head dispatch, workspace size, and the scalar reference instantiation.
#include "kernels/qattn/qattn.h"

#include <cmath>
#include <string>

#include "core/common.h"
#include "kernels/eltwise/vec_scalar.h"
#include "kernels/qattn/qattn_impl.h"

namespace slimrt::kernels {
namespace {

struct OpsScalar {
  using V = VecScalar;
  using Code = int16_t;
  static constexpr int G = 2;
  static constexpr int32_t kAOff = 0;
  template <class T>
  static void quant(const float* x, int64_t n, float inv, const float* invv, int32_t off, T* out) {
    for (int64_t i = 0; i < n; ++i) {
      float r = std::nearbyint(x[i] * (invv ? invv[i] : inv));
      out[i] = static_cast<T>((r == r ? static_cast<int32_t>(r) : 0) + off);  // NaN: scale is NaN anyway
    }
  }
  static void dot(const Code* a, int64_t lda, int R, const Code* b, int64_t kg, int64_t N, int32_t* out,
                  int64_t ldo) {
    for (int r = 0; r < R; ++r)
      for (int64_t n = 0; n < N; ++n) {
        int32_t s = 0;
        for (int64_t g = 0; g < kg; ++g)
          for (int t = 0; t < G; ++t) s += int32_t{a[r * lda + g * G + t]} * b[(g * N + n) * G + t];
        out[r * ldo + n] = s;
      }
  }
  static void scale_row(const int32_t* acc, const int32_t* corr, int32_t off, float a_scale, const float* b_scale,
                        int64_t n, float* y) {
    for (int64_t j = 0; j < n; ++j)
      y[j] = static_cast<float>(acc[j] - (corr ? off * corr[j] : 0)) * (a_scale * b_scale[j]);
  }
};

}  // namespace

namespace detail {

size_t q8attn_ws_bytes(int64_t Sq, int64_t Sk, int64_t D, int G, size_t code_bytes) {
  auto al = [](size_t b) { return (b + 63) / 64 * 64; };
  const size_t Dg = static_cast<size_t>((D + G - 1) / G), Skg = static_cast<size_t>((Sk + G - 1) / G);
  const size_t L = static_cast<size_t>(Sk > D ? Sk : D), sk = static_cast<size_t>(Sk), d = static_cast<size_t>(D);
  return al(code_bytes * Dg * sk * G) + al(code_bytes * Skg * d * G) + al(code_bytes * Skg * G * d) +
         al(code_bytes * Dg * G) + al(4 * sk) + al(4 * sk) + al(4 * d) + al(4 * d) + al(code_bytes * 4 * Dg * G) +
         al(code_bytes * 4 * Skg * G) + al(4 * 4 * L) + al(4 * static_cast<size_t>(Sq) * sk);
}

const Q8AttnKernels& q8attn_scalar() {
  static const Q8AttnKernels k{"scalar", [](const Q8AttnHead& h, void* ws, const EltwiseKernels& kt) {
                                 Q8AttnImpl<OpsScalar>::head(h, ws, kt);
                               }};
  return k;
}

}  // namespace detail

namespace {
const detail::Q8AttnKernels& table(Isa isa) {
  if (!isa_supported(isa)) throw Error(Code::Unsupported, std::string("q8_attention: the CPU cannot run ") + isa_name(isa));
  switch (isa) {
    case Isa::Scalar: return detail::q8attn_scalar();
    case Isa::Avx2:
    case Isa::Avx512: return detail::q8attn_avx2();
    default: return detail::q8attn_vnni();  // Avx512Vnni, Amx
  }
}
int group_of(Isa isa) { return isa == Isa::Avx512Vnni || isa == Isa::Amx ? 4 : 2; }
}  // namespace

size_t q8_attention_workspace(int64_t Sq, int64_t Sk, int64_t D) {
  // the largest layout of any ISA (int16 codes, G = 2 or 4 padding)
  size_t a = detail::q8attn_ws_bytes(Sq, Sk, D, 2, 2), b = detail::q8attn_ws_bytes(Sq, Sk, D, 4, 1);
  return a > b ? a : b;
}

const char* q8_attention_isa(Isa isa) { return table(isa).isa; }

void q8_attention_head(const Q8AttnHead& h, void* ws, Isa isa) {
  if (h.Sq < 0 || h.Sk < 0 || h.D < 0) throw Error(Code::InvalidArgument, "q8_attention: negative size");
  if (h.Sk > kQ8AttnMaxLen || h.D > kQ8AttnMaxLen)
    throw Error(Code::InvalidArgument, "q8_attention: key length " + std::to_string(h.Sk) + " or head size " +
                                           std::to_string(h.D) + " above " + std::to_string(kQ8AttnMaxLen) +
                                           " (int32 sums would not be exact); use fp32 attention");
  if (h.Sq == 0 || h.D == 0) return;
  (void)group_of;
  table(isa).head(h, ws, eltwise_kernels(isa));
}

}  // namespace slimrt::kernels

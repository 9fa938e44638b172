// attention_head dispatch, workspace sizes, and the scalar reference instantiations.
#include "kernels/attn/attn.h"

#include <cmath>
#include <cstring>
#include <string>

#include "core/common.h"
#include "kernels/eltwise/vec_scalar.h"
#include "kernels/attn/attn_impl.h"

namespace slimrt::kernels {
namespace {

struct IntScalar {  // one int32 "lane"; a group is two int16 codes
  using T = int32_t;
  static constexpr int L = 1;
  static T zero() { return 0; }
  static T load(const void* p) { int32_t v; std::memcpy(&v, p, 4); return v; }
  static T load_n(const void* p, int n) { return n > 0 ? load(p) : 0; }
  static T bcast(int32_t v) { return v; }
  static T step(T acc, T a, T b) {
    int16_t x[2], y[2];
    std::memcpy(x, &a, 4);
    std::memcpy(y, &b, 4);
    return acc + int32_t{x[0]} * y[0] + int32_t{x[1]} * y[1];
  }
  static void store(int32_t* p, T v) { *p = v; }
  static void store_n(int32_t* p, T v, int n) { if (n > 0) *p = v; }
  static T sub(T a, T b) { return a - b; }
  static T mullo(T a, T b) { return a * b; }
  static float to_float(T v) { return static_cast<float>(v); }
};

struct OpsScalar {
  using V = VecScalar;
  using I = IntScalar;
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
  static void pack_v(const float* const rows[G], const float* invv, int64_t D, Code* dst) {
    for (int t = 0; t < G; ++t)
      for (int64_t d = 0; d < D; ++d) {
        float r = rows[t] ? std::nearbyint(rows[t][d] * invv[d]) : 0.f;
        dst[d * G + t] = static_cast<Code>(r == r ? static_cast<int32_t>(r) : 0);
      }
  }
};

}  // namespace

namespace detail {

size_t q8attn_ws_bytes(int64_t Sq, int64_t Sk, int64_t D, int G, size_t code_bytes) {
  const auto al = align64;
  const size_t Dg = static_cast<size_t>((D + G - 1) / G), Skg = static_cast<size_t>((Sk + G - 1) / G);
  const size_t L = static_cast<size_t>(Sk > D ? Sk : D), sk = static_cast<size_t>(Sk), d = static_cast<size_t>(D);
  return al(code_bytes * Dg * sk * G) + al(code_bytes * Skg * d * G) + al(code_bytes * Dg * G) + al(4 * sk) +
         al(4 * sk) + al(4 * d) + al(4 * d) + al(code_bytes * 4 * Dg * G) + al(code_bytes * 4 * Skg * G) +
         al(4 * 4 * L) + al(4 * static_cast<size_t>(Sq) * sk);
}

const AttnKernels& attn_q8_scalar() {
  static const AttnKernels k{"scalar", [](const AttnHead& h, void* ws, const EltwiseKernels& kt) {
                                 Q8AttnImpl<OpsScalar>::head(h, ws, kt);
                               }};
  return k;
}

const AttnKernels& attn_f32_scalar() {
  static const AttnKernels k{"scalar", [](const AttnHead& h, void* ws, const EltwiseKernels& kt) {
                               F32AttnImpl<VecScalar>::head(h, ws, kt);
                             }};
  return k;
}

}  // namespace detail

namespace {
const detail::AttnKernels& table(Isa isa, bool int8) {
  if (!isa_supported(isa)) throw Error(Code::Unsupported, std::string("attention: the CPU cannot run ") + isa_name(isa));
  if (!int8) {
    switch (isa) {
      case Isa::Scalar: return detail::attn_f32_scalar();
      case Isa::Avx2: return detail::attn_f32_avx2();
      default: return detail::attn_f32_avx512();
    }
  }
  switch (isa) {
    case Isa::Scalar: return detail::attn_q8_scalar();
    case Isa::Avx2:
    case Isa::Avx512: return detail::attn_q8_avx2();
    default: return detail::attn_q8_vnni();  // Avx512Vnni, Amx
  }
}
}  // namespace

size_t attention_head_workspace(int64_t Sq, int64_t Sk, int64_t D, bool int8) {
  if (!int8) return sizeof(float) * static_cast<size_t>((D * Sk + 15) / 16 * 16 + Sq * Sk);
  // the largest int8 layout of any ISA (int16 codes, G = 2 or 4 padding)
  size_t a = detail::q8attn_ws_bytes(Sq, Sk, D, 2, 2), b = detail::q8attn_ws_bytes(Sq, Sk, D, 4, 1);
  return a > b ? a : b;
}

const char* attention_isa(Isa isa, bool int8) { return table(isa, int8).isa; }

void attention_head(const AttnHead& h, bool int8, void* ws, Isa isa) {
  if (h.Sq < 0 || h.Sk < 0 || h.D < 0) throw Error(Code::InvalidArgument, "attention: negative size");
  if (int8 && (h.Sk > kQ8AttnMaxLen || h.D > kQ8AttnMaxLen))
    throw Error(Code::InvalidArgument, "int8 attention: key length " + std::to_string(h.Sk) + " or head size " +
                                           std::to_string(h.D) + " above " + std::to_string(kQ8AttnMaxLen) +
                                           " (int32 sums would not be exact); use fp32 attention");
  if (h.Sq == 0 || h.D == 0) return;
  table(isa, int8).head(h, ws, eltwise_kernels(isa));
}

}  // namespace slimrt::kernels

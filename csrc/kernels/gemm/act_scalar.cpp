// Reference activations: each float is widened to double, the function is
// evaluated with <cmath>, and the result is rounded back to float once.
#include <cmath>

#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels::detail::scalar {
namespace {

double act1(double x, Act act, double alpha) {
  switch (act) {
    case Act::None: return x;
    case Act::Relu: return x > 0 ? x : 0.0;
    case Act::Relu6: return x < 0 ? 0.0 : (x > 6 ? 6.0 : x);
    case Act::LeakyRelu: return x >= 0 ? x : alpha * x;
    case Act::Sigmoid: return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
    case Act::Tanh: return std::tanh(x);
    case Act::Gelu: return 0.5 * x * std::erfc(-x * 0.70710678118654752440);
    case Act::GeluTanh: {
      double u = 0.79788456080286535588 * (x + 0.044715 * x * x * x);
      return x / (1.0 + std::exp(-2.0 * u));  // == 0.5 x (1 + tanh u), no cancellation for x << 0
    }
    case Act::Silu: return x >= 0 ? x / (1.0 + std::exp(-x)) : x * std::exp(x) / (1.0 + std::exp(x));
    case Act::HardSwish: {
      double r = x + 3.0;
      r = r < 0 ? 0.0 : (r > 6 ? 6.0 : r);
      return x * r / 6.0;
    }
    case Act::Elu: return x >= 0 ? x : alpha * std::expm1(x);
    case Act::HardSigmoid: {
      double r = x + 3.0;
      r = r < 0 ? 0.0 : (r > 6 ? 6.0 : r);
      return r / 6.0;
    }
  }
  return x;
}

}  // namespace

void f32_act_inplace(float* x, int64_t n, Act act, float alpha) {
  if (act == Act::None) return;
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(act1(x[i], act, alpha));
}

}  // namespace slimrt::kernels::detail::scalar

// apply_act_inplace: dispatch to the ISA's activation loop; activation names.
#include <cstring>

#include "core/common.h"
#include "kernels/gemm/sgemm.h"
#include "kernels/gemm/sgemm_internal.h"

namespace slimrt::kernels {
namespace {
constexpr const char* kActNames[kNumActs] = {"none", "relu", "relu6", "leaky_relu", "sigmoid", "tanh",
                                             "gelu", "gelu_tanh", "silu", "hard_swish", "elu",
                                             "hard_sigmoid"};
}  // namespace

bool parse_act(const char* name, Act* out) {
  for (int i = 0; i < kNumActs; ++i) {
    if (std::strcmp(name, kActNames[i]) == 0) { *out = static_cast<Act>(i); return true; }
  }
  return false;
}

const char* act_name(Act act) {
  int i = static_cast<int>(act);
  return i >= 0 && i < kNumActs ? kActNames[i] : "unknown";
}

namespace detail {
bool act_is_simple(Act act) {
  switch (act) {
    case Act::None: case Act::Relu: case Act::Relu6: case Act::LeakyRelu:
    case Act::HardSigmoid: case Act::HardSwish:
      return true;
    default:
      return false;
  }
}
}  // namespace detail

void apply_act_inplace(float* x, int64_t n, Act act, float alpha, Isa isa) {
  if (n < 0) fail(Code::InvalidArgument, "apply_act_inplace: negative length");
  if (static_cast<int>(act) < 0 || static_cast<int>(act) >= kNumActs)
    fail(Code::InvalidArgument, "apply_act_inplace: unknown activation");
  if (!isa_supported(isa)) fail(Code::Unsupported, std::string("ISA ") + isa_name(isa) + " is not supported");
  if (isa >= Isa::Avx512) detail::avx512::f32_act_inplace(x, n, act, alpha);
  else if (isa == Isa::Avx2) detail::avx2::f32_act_inplace(x, n, act, alpha);
  else detail::scalar::f32_act_inplace(x, n, act, alpha);
}

}  // namespace slimrt::kernels

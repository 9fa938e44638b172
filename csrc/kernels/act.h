// Activation functions that kernels apply in their epilogues, and the
// epilogue descriptor shared by GEMM/convolution kernels of every ISA.
// Names match the IR attribute `act` (python/slimrt/ir.py ACTIVATIONS).
#pragma once
#include <cstdint>

namespace slimrt {

enum class Act : int32_t {
  None = 0,
  Relu = 1,
  Relu6 = 2,
  LeakyRelu = 3,    // x >= 0 ? x : alpha * x
  Sigmoid = 4,
  Tanh = 5,
  Gelu = 6,         // 0.5 x (1 + erf(x / sqrt 2))
  GeluTanh = 7,     // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  Silu = 8,         // x * sigmoid(x)
  HardSwish = 9,    // x * relu6(x + 3) / 6
  Elu = 10,         // x >= 0 ? x : alpha * (exp(x) - 1)
  HardSigmoid = 11, // relu6(x + 3) / 6
};
constexpr int kNumActs = 12;

// Outputs at least this big (a quarter of the development CPU's 32 MB L3) are written with streaming
// stores by the kernels that can (fp32 GEMM, depthwise conv): the next layer finds them in DRAM
// either way. Fused ops that write such an output piece by piece set Epilogue::stream by it.
constexpr int64_t kStreamOutputBytes = int64_t{8} << 20;

// What a GEMM/conv kernel does to each output element before storing it:
//   y[m][n] = act(acc[m][n] * (scale ? scale[n] : 1) + (bias ? bias[n] : 0)
//                 + (residual ? residual[m*ldr + n] : 0))
struct Epilogue {
  const float* bias = nullptr;      // [N] or null
  const float* scale = nullptr;     // [N] per-column multiplier or null
  const float* residual = nullptr;  // [M x ldr] added before the activation, or null
  int64_t ldr = 0;
  Act act = Act::None;
  float alpha = 0.f;                // leaky_relu slope / elu alpha
  // The output is one piece of a tensor far bigger than the caches, not read again soon: kernels
  // that can write it with streaming stores (the fp32 GEMM) do, whatever this piece's size.
  bool stream = false;
  // Bytes the caller reads next (the fp32 GEMM fetches them towards L2 a slice per row tile while it
  // computes, so a memory-bound step that follows finds them cached), or null. Only a hint.
  const void* prefetch = nullptr;
  int64_t prefetch_bytes = 0;
};

}  // namespace slimrt

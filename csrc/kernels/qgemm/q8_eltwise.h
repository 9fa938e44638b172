// Static-int8 (u8 activation) pooling, elementwise add and table activations, NHWC.
// Namespace slimrt::kernels. Formats as in qgemm.h: x ~ scale * (q - zero), q in 0..255.
// Plain baseline C++ (the loops are over bytes, which the compiler vectorises with SSE2);
// results are identical on every ISA.
//
//   q8_max_pool2d      on the codes (max commutes with the monotone dequantization), so the
//                      output has the input's (scale, zero); padding never wins; a window
//                      without an in-image tap gives code 0. Pool2dShape rules (kernels/pool).
//   q8_global_avg_pool y[n][c] = float(sum_hw q - HW * zero) * (scale * (1 / HW)) (float math
//                      in that order), then u8 clamp(rint(y * (1/out_scale)) + out_zero) or float.
//   q8_add             y = act((a - za) * sa + (b - zb) * sb) (float, products rounded first,
//                      then the sum), same-shaped a and b; u8 or float out as above.
//                      act: none / relu / relu6 only.
//   q8_lut             y[i] = table[q[i]]: any u8 -> u8 function, e.g. an activation of a
//                      quantized value requantized (the table is built by the op).
#pragma once
#include <cstdint>

#include "kernels/act.h"
#include "kernels/pool/pool.h"

namespace slimrt::kernels {

void q8_max_pool2d(const uint8_t* x, uint8_t* y, const Pool2dShape& s, int threads);

// out_scale > 0: y is uint8 [n][c]; 0: y is float [n][c].
void q8_global_avg_pool(const uint8_t* x, int64_t n, int64_t hw, int64_t c, float scale, int32_t zero,
                        float out_scale, int32_t out_zero, void* y, int threads);

void q8_add(const uint8_t* a, float sa, int32_t za, const uint8_t* b, float sb, int32_t zb, int64_t count, Act act,
            float out_scale, int32_t out_zero, void* y, int threads);

void q8_lut(const uint8_t* x, int64_t count, const uint8_t* table, uint8_t* y, int threads);
// y[i] = min(max(x[i], lo), hi): the table of relu / relu6 when the output keeps the input's parameters.
void q8_clamp(const uint8_t* x, int64_t count, uint8_t lo, uint8_t hi, uint8_t* y, int threads);

}  // namespace slimrt::kernels

// CPU feature detection and the ISA cap. The only place that reads cpuid.
#pragma once
#include <string>

namespace slimrt {

// Ordered: each level implies the ones below it.
enum class Isa : int {
  Scalar = 0,      // plain C++, any x86-64 (also the reference path)
  Avx2 = 1,        // AVX2 + FMA + F16C
  Avx512 = 2,      // AVX-512 F/BW/VL/DQ
  Avx512Vnni = 3,  // + AVX512_VNNI (vpdpbusd)
  Amx = 4,         // + AMX-TILE/AMX-INT8, with OS permission granted
};

struct CpuInfo {
  std::string vendor;
  std::string brand;
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avxvnni = false, avx512bf16 = false;
  bool avx512vbmi = false;  // vpermb: kernels use it inside the Avx512Vnni level when present
  bool amx_tile = false, amx_int8 = false, amx_permitted = false;
  bool os_avx = false, os_avx512 = false, os_amx = false;  // XCR0 state bits
  Isa best = Isa::Scalar;     // best ISA this CPU+OS supports
  Isa active = Isa::Scalar;   // best capped by SLIMRT_ISA
  std::string cap;            // value of SLIMRT_ISA ("" when unset)
};

const CpuInfo& cpu_info();          // detected once, thread-safe
inline Isa active_isa() { return cpu_info().active; }
const char* isa_name(Isa isa);       // "scalar", "avx2", "avx512", "avx512vnni", "amx"
bool parse_isa(const std::string& s, Isa* out);
// True when `isa` can run on this machine (<= best).
bool isa_supported(Isa isa);

}  // namespace slimrt

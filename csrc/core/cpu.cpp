#include "core/cpu.h"

#include <cpuid.h>
#include <cstdlib>
#include <cstring>
#include <mutex>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace slimrt {
namespace {

void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

// XGETBV(0): which register states the OS saves on context switch.
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

// Linux needs a permission request before the first AMX tile instruction.
bool request_amx_permission() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr int ARCH_REQ_XCOMP_PERM = 0x1023;
  constexpr int XFEATURE_XTILEDATA = 18;
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
  return false;
#endif
}

CpuInfo detect() {
  CpuInfo c;
  unsigned r[4];
  cpuid(0, 0, r);
  unsigned max_leaf = r[0];
  char vendor[13] = {0};
  std::memcpy(vendor, &r[1], 4);
  std::memcpy(vendor + 4, &r[3], 4);
  std::memcpy(vendor + 8, &r[2], 4);
  c.vendor = vendor;
  cpuid(0x80000000u, 0, r);
  if (r[0] >= 0x80000004u) {
    char brand[49] = {0};
    for (unsigned i = 0; i < 3; ++i) {
      cpuid(0x80000002u + i, 0, r);
      std::memcpy(brand + 16 * i, r, 16);
    }
    c.brand = brand;
    size_t b = c.brand.find_first_not_of(' ');
    c.brand = b == std::string::npos ? "" : c.brand.substr(b);
  }
  if (max_leaf < 1) return c;
  cpuid(1, 0, r);
  bool osxsave = r[2] & (1u << 27);   // ECX.27: OS uses XSAVE/XGETBV
  bool avx = r[2] & (1u << 28);       // ECX.28: AVX
  c.fma = r[2] & (1u << 12);          // ECX.12: FMA3
  c.f16c = r[2] & (1u << 29);         // ECX.29: F16C
  if (osxsave) {
    unsigned long long xcr0 = xgetbv0();
    c.os_avx = (xcr0 & 0x6) == 0x6;              // XMM (bit 1) + YMM (bit 2)
    c.os_avx512 = (xcr0 & 0xE6) == 0xE6;         // + opmask, ZMM_Hi256, Hi16_ZMM (bits 5-7)
    c.os_amx = (xcr0 & 0x60000) == 0x60000;      // XTILECFG (17) + XTILEDATA (18)
  }
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    c.avx2 = avx && (r[1] & (1u << 5));          // EBX.5: AVX2
    c.avx512f = r[1] & (1u << 16);               // EBX.16: AVX512F
    c.avx512dq = r[1] & (1u << 17);              // EBX.17: AVX512DQ
    c.avx512bw = r[1] & (1u << 30);              // EBX.30: AVX512BW
    c.avx512vl = r[1] & (1u << 31);              // EBX.31: AVX512VL
    c.avx512vnni = r[2] & (1u << 11);            // ECX.11: AVX512_VNNI
    c.avx512vbmi = r[2] & (1u << 1);             // ECX.1: AVX512_VBMI
    c.amx_tile = r[3] & (1u << 24);              // EDX.24: AMX-TILE
    c.amx_int8 = r[3] & (1u << 25);              // EDX.25: AMX-INT8
    cpuid(7, 1, r);
    c.avxvnni = r[0] & (1u << 4);                // EAX.4: AVX-VNNI (VEX encoded)
    c.avx512bf16 = r[0] & (1u << 5);             // EAX.5: AVX512_BF16
  }
  Isa best = Isa::Scalar;
  if (c.os_avx && c.avx2 && c.fma && c.f16c) best = Isa::Avx2;
  if (best == Isa::Avx2 && c.os_avx512 && c.avx512f && c.avx512bw && c.avx512vl && c.avx512dq)
    best = Isa::Avx512;
  if (best == Isa::Avx512 && c.avx512vnni) best = Isa::Avx512Vnni;
  if (best == Isa::Avx512Vnni && c.amx_tile && c.amx_int8 && c.os_amx) {
    c.amx_permitted = request_amx_permission();
    if (c.amx_permitted) best = Isa::Amx;
  }
  c.best = best;
  c.active = best;
  if (const char* env = std::getenv("SLIMRT_ISA")) {
    c.cap = env;
    Isa cap;
    if (!c.cap.empty() && parse_isa(c.cap, &cap) && cap < best) c.active = cap;
  }
  return c;
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = detect();
  return info;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Vnni: return "avx512vnni";
    case Isa::Amx: return "amx";
  }
  return "unknown";
}

bool parse_isa(const std::string& s, Isa* out) {
  for (int i = 0; i <= static_cast<int>(Isa::Amx); ++i) {
    if (s == isa_name(static_cast<Isa>(i))) { *out = static_cast<Isa>(i); return true; }
  }
  return false;
}

bool isa_supported(Isa isa) { return isa <= cpu_info().best; }

}  // namespace slimrt

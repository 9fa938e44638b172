// CRC-32 (zlib polynomial), table-driven "slicing": table k maps a byte b to
// the CRC contribution of b followed by k zero bytes, so a block of bytes is
// folded with independent lookups instead of one dependent lookup per byte.
// The main loop slices by 16 (16 KiB of tables, fits L1), the tail by 8, then
// bytewise. Portable C++; no ISA flags.
#include "format/crc32.h"

#include <array>
#include <cstring>

namespace slimrt {
namespace {

constexpr uint32_t kPoly = 0xEDB88320u;  // reflected 0x04C11DB7

struct Tables {
  uint32_t t[16][256];
};

constexpr Tables make_tables() {
  Tables tb{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    tb.t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i)
    for (int k = 1; k < 16; ++k) tb.t[k][i] = (tb.t[k - 1][i] >> 8) ^ tb.t[0][tb.t[k - 1][i] & 0xFF];
  return tb;
}

constexpr Tables kTables = make_tables();

}  // namespace

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  const auto& t = kTables.t;
  const auto& t16 = kTables.t;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (size && (reinterpret_cast<uintptr_t>(p) & 7)) {  // align for the 8-byte loads
    c = t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    --size;
  }
  while (size >= 16) {  // two 8-byte steps folded into one: 16 independent lookups
    uint32_t w0, w1, w2, w3;
    std::memcpy(&w0, p, 4);
    std::memcpy(&w1, p + 4, 4);
    std::memcpy(&w2, p + 8, 4);
    std::memcpy(&w3, p + 12, 4);
    w0 ^= c;
    c = t16[15][w0 & 0xFF] ^ t16[14][(w0 >> 8) & 0xFF] ^ t16[13][(w0 >> 16) & 0xFF] ^ t16[12][w0 >> 24] ^
        t16[11][w1 & 0xFF] ^ t16[10][(w1 >> 8) & 0xFF] ^ t16[9][(w1 >> 16) & 0xFF] ^ t16[8][w1 >> 24] ^
        t[7][w2 & 0xFF] ^ t[6][(w2 >> 8) & 0xFF] ^ t[5][(w2 >> 16) & 0xFF] ^ t[4][w2 >> 24] ^
        t[3][w3 & 0xFF] ^ t[2][(w3 >> 8) & 0xFF] ^ t[1][(w3 >> 16) & 0xFF] ^ t[0][w3 >> 24];
    p += 16;
    size -= 16;
  }
  while (size >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;  // little-endian: the running CRC folds into the first four bytes
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    size -= 8;
  }
  while (size--) c = t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
  return ~c;
}

}  // namespace slimrt

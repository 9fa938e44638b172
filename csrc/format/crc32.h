// CRC-32 with zlib's polynomial (reflected 0xEDB88320, init/xorout 0xFFFFFFFF),
// so Python writes the same value with zlib.crc32. Chainable exactly like
// zlib: crc32(b, crc32(a)) == crc32(a + b).
#pragma once
#include <cstddef>
#include <cstdint>

namespace slimrt {

// Slicing-by-16/8 table implementation, baseline x86-64 (no ISA flags needed).
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);

}  // namespace slimrt

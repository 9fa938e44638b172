// Byte layout constants of the .slim container (docs/format.md is the spec).
// Shared by the loader and the Python writer's numbers (python/slimrt/slimfile.py).
#pragma once
#include <cstdint>

namespace slimrt::slim {

constexpr uint8_t kMagic[8] = {0x89, 'S', 'L', 'I', 'M', '\r', '\n', 0x1A};
constexpr uint16_t kVersionMajor = 1;  // readers reject any other major
constexpr uint16_t kVersionMinor = 1;  // 1.1: relative CSR indices (docs/format.md "Compatibility")

constexpr uint32_t kHeaderSize = 64;
constexpr uint32_t kHeaderCrcOffset = 60;   // u32 crc32(header[0,60) ++ section table)
constexpr uint32_t kSectionEntrySize = 32;  // u32 kind, u32 crc, u64 offset, u64 size, u64 reserved
constexpr uint32_t kMaxSections = 16;
constexpr uint32_t kBufferEntrySize = 24;   // u64 offset, u64 size, u32 crc, u32 reserved
constexpr uint64_t kFileAlign = 64;         // every section and buffer offset

enum SectionKind : uint32_t { kGraph = 1, kTensors = 2, kData = 3 };

constexpr uint32_t kMaxRank = 8;
constexpr uint32_t kMaxName = 4096;         // names of values, nodes, ops, tensors, attributes, metadata keys

}  // namespace slimrt::slim

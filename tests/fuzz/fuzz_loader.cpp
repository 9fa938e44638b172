// Fuzz harness of the .slim loader (csrc/format/loader.cpp), the trust boundary.
// Any input must end in a loaded model or slimrt::Error(Code::Format) -- never a
// crash, a sanitizer report, another exception type, or a huge allocation.
//
// libFuzzer (clang):  see README.md.
// Standalone (gcc, no libFuzzer): build with -DSLIMRT_FUZZ_STANDALONE; main() then
// runs a seeded mutation loop (bit flips, byte writes, "interesting" integers at
// random offsets, truncation, splicing) over the seed files given on the command line.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/common.h"
#include "format/crc32.h"
#include "format/model_def.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto m = slimrt::load_model_memory(data, size);
    // Touch what the runtime would read, so a sanitizer sees any out-of-bounds view.
    uint64_t sum = 0;
    for (const auto& t : m->tensors) {
      const slimrt::TensorDef* parts[2] = {&t, t.values.get()};
      for (const slimrt::TensorDef* p : parts) {
        if (!p) continue;
        for (const slimrt::Bytes* b : {&p->data, &p->scale, &p->lut, &p->indptr, &p->indices})
          if (b->size) sum += b->data[0] + b->data[b->size - 1];
      }
    }
    for (const auto& n : m->nodes) sum += n.inputs.size() + n.attrs.size();
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const slimrt::Error& e) {
    if (e.code() != slimrt::Code::Format) __builtin_trap();
  }
  return 0;
}

#ifdef SLIMRT_FUZZ_STANDALONE
static std::vector<uint8_t> read_file(const char* path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s ITERATIONS SEED_FILE...\n", argv[0]);
    return 2;
  }
  long iters = std::atol(argv[1]);
  std::vector<std::vector<uint8_t>> seeds;
  for (int i = 2; i < argc; ++i) seeds.push_back(read_file(argv[i]));
  for (auto& s : seeds) LLVMFuzzerTestOneInput(s.data(), s.size());  // seeds must load cleanly too
  std::mt19937_64 rng(12345);
  const uint64_t interesting[] = {0, 1, 2, 3, 7, 8, 63, 64, 65, 127, 128, 255, 256, 0x7fff, 0xffff, 0x10000,
                                  0x7fffffff, 0x80000000u, 0xffffffffu, 0x100000000ull, 1ull << 40, 1ull << 62,
                                  0x7fffffffffffffffull, 0x8000000000000000ull, ~0ull, ~0ull - 63};
  long accepted = 0;
  for (long it = 0; it < iters; ++it) {
    std::vector<uint8_t> d = seeds[rng() % seeds.size()];
    int nmut = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < nmut && !d.empty(); ++k) {
      size_t pos = rng() % d.size();
      switch (rng() % 6) {
        case 0: d[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        case 1: d[pos] = static_cast<uint8_t>(rng()); break;
        case 2: {  // an interesting integer of width 1/2/4/8 at pos
          uint64_t v = interesting[rng() % (sizeof interesting / sizeof interesting[0])];
          size_t w = size_t{1} << (rng() % 4);
          for (size_t b = 0; b < w && pos + b < d.size(); ++b) d[pos + b] = static_cast<uint8_t>(v >> (8 * b));
          break;
        }
        case 3: d.resize(rng() % (d.size() + 1)); break;
        case 4: {  // splice a chunk of another seed
          const auto& o = seeds[rng() % seeds.size()];
          size_t from = rng() % o.size(), len = std::min<size_t>(rng() % 64, o.size() - from);
          for (size_t b = 0; b < len && pos + b < d.size(); ++b) d[pos + b] = o[from + b];
          break;
        }
        case 5: d.insert(d.begin() + pos, static_cast<uint8_t>(rng())); break;
      }
    }
    // Mutations mostly die at a CRC check; most of the time recompute the section and header
    // CRCs so that the parsers behind them run on the mutated bytes. (Buffer CRCs stay as
    // they are: a mutated buffer exercises the CRC path, the content checks run on seeds.)
    if (rng() % 4 && d.size() >= 64) {
      uint32_t nsec;
      std::memcpy(&nsec, d.data() + 24, 4);
      if (nsec >= 3 && nsec <= 16 && 64 + nsec * 32ull <= d.size()) {
        for (uint32_t i = 0; i < nsec; ++i) {
          uint8_t* e = d.data() + 64 + 32 * i;
          uint32_t kind;
          uint64_t off, size;
          std::memcpy(&kind, e, 4);
          std::memcpy(&off, e + 8, 8);
          std::memcpy(&size, e + 16, 8);
          if (kind != 3 && off <= d.size() && size <= d.size() - off) {
            uint32_t c = slimrt::crc32(d.data() + off, size);
            std::memcpy(e + 4, &c, 4);
          }
        }
        uint32_t crc = slimrt::crc32(d.data(), 60);
        crc = slimrt::crc32(d.data() + 64, nsec * 32, crc);
        std::memcpy(d.data() + 60, &crc, 4);
      }
    }
    try {
      slimrt::load_model_memory(d.data(), d.size());
      ++accepted;
    } catch (const slimrt::Error& e) {
      if (e.code() != slimrt::Code::Format) __builtin_trap();
    }
    LLVMFuzzerTestOneInput(d.data(), d.size());
  }
  std::printf("%ld iterations, %ld mutated inputs accepted\n", iters, accepted);
  return 0;
}
#endif

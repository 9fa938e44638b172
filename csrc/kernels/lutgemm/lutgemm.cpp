// LUT-GEMM driver (baseline x86-64): packing of codebook/log2 indices into the
// kernel layout, the GEMV and decoded-tile paths, threading, the epilogue, the
// scalar reference path and the im2col convolution. See lutgemm.h.
#include "kernels/lutgemm/lutgemm.h"

#include "kernels/gemm/conv_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/threadpool.h"
#include "kernels/gemm/sgemm.h"
#include "kernels/lutgemm/lutgemm_internal.h"
#include "kernels/spmm/spmm.h"

namespace slimrt::kernels {
namespace {

constexpr int64_t kChunk = 64;  // weight rows per accumulator chunk
constexpr int kP = 4;           // activation rows per kernel call

[[noreturn]] void bad(const std::string& m) { fail(Code::InvalidArgument, "lutgemm: " + m); }

detail::LutRowsFn kernel_for(Isa isa) {
  if (isa >= Isa::Avx512) return detail::avx512::lut_rows;
  if (isa == Isa::Avx2) return detail::avx2::lut_rows;
  return nullptr;
}

int clamp_threads(int t) { return t <= 0 ? default_threads() : t; }

int storage_bits(int bits) { return bits <= 2 ? bits : bits <= 4 ? 4 : 8; }

// Code i (0-based over the whole [N][K] matrix) of an LSB-first bit stream.
inline uint32_t code_at(const uint8_t* packed, int64_t i, int bits, int64_t nbytes) {
  const int64_t bit = i * bits, byte = bit >> 3;
  const int sh = static_cast<int>(bit & 7);
  uint32_t v = packed[byte];
  if (sh + bits > 8 && byte + 1 < nbytes) v |= uint32_t(packed[byte + 1]) << 8;
  return (v >> sh) & ((1u << bits) - 1);
}

std::unique_ptr<PackedLut> alloc_layout(int64_t N, int64_t K, int bits, bool per_row, Isa isa) {
  if (N < 0 || K < 0) bad("negative size");
  if (static_cast<int>(isa) < 0 || static_cast<int>(isa) > static_cast<int>(Isa::Amx)) bad("unknown ISA");
  if (!isa_supported(isa)) fail(Code::Unsupported, std::string("lutgemm: ISA ") + isa_name(isa) + " not supported");
  auto p = std::make_unique<PackedLut>();
  p->N = N; p->K = K; p->bits = bits; p->per_row = per_row; p->isa = isa;
  p->sb = storage_bits(bits);
  p->lanes = isa == Isa::Avx2 ? detail::avx2::kLutLanes : detail::avx512::kLutLanes;
  p->Npad = (N + 31) / 32 * 32;
  p->kblock = p->lanes * 32 / p->sb;
  p->nblocks = (K + p->kblock - 1) / p->kblock;
  p->row_bytes = p->nblocks * p->lanes * 4;
  p->table = p->sb <= 4 ? 16 : 256;
  uint64_t total = 0;
  if (mul_overflow_u64(uint64_t(p->Npad), uint64_t(p->row_bytes), &total) || total > (uint64_t{1} << 40))
    bad("matrix too large");
  p->idx = aligned_array<uint8_t>(total);
  std::memset(p->idx.get(), 0, total);
  const int64_t groups = per_row ? p->Npad : 1;
  p->lut = aligned_array<float>(groups * p->table);
  std::memset(p->lut.get(), 0, sizeof(float) * groups * p->table);
  return p;
}

// Scatters the codes of the [N][K] bit stream into the layout (lutgemm.h); returns the largest code.
uint32_t fill_indices(PackedLut& p, const uint8_t* packed) {
  const int64_t nbytes = (p.N * p.K * p.bits + 7) / 8;
  uint32_t maxc = 0;
  for (int64_t n = 0; n < p.N; ++n) {
    uint32_t* row = reinterpret_cast<uint32_t*>(p.idx.get() + n * p.row_bytes);
    for (int64_t k = 0; k < p.K; ++k) {
      const uint32_t c = code_at(packed, n * p.K + k, p.bits, nbytes);
      maxc = std::max(maxc, c);
      const int64_t b = k / p.kblock, rem = k % p.kblock, j = rem / p.lanes, l = rem % p.lanes;
      row[b * p.lanes + l] |= c << (j * p.sb);
    }
  }
  return maxc;
}

// table[i] = src[i mod 2^sb] (entries past the source are 0).
void fill_table(float* table, int table_size, int sb, const float* src, int64_t n_src) {
  for (int i = 0; i < table_size; ++i) {
    const int64_t e = sb <= 4 ? (i & ((1 << sb) - 1)) : i;
    table[i] = e < n_src ? src[e] : 0.f;
  }
}

// The table value of element (n, k) (scalar reference decode of the layout).
inline float table_value(const PackedLut& p, int64_t n, int64_t k) {
  const uint32_t* row = reinterpret_cast<const uint32_t*>(p.idx.get() + n * p.row_bytes);
  const int64_t b = k / p.kblock, rem = k % p.kblock, j = rem / p.lanes, l = rem % p.lanes;
  const uint32_t c = (row[b * p.lanes + l] >> (j * p.sb)) & ((p.sb == 8 ? 0xFFu : (1u << p.sb) - 1));
  return p.lut[(p.per_row ? n * p.table : 0) + c];
}

void epilogue_row(float* y, const float* acc, int64_t cnt, int64_t n0, const PackedLut& W, const Epilogue& ep,
                  const float* res, Isa isa) {
  kernels::epilogue_row(y, acc, cnt, W.row_scale ? W.row_scale.get() + n0 : nullptr, ep, n0, res, isa);
}

int64_t kpad(const PackedLut& W) { return W.nblocks * W.kblock; }

void run_scalar(int64_t M, const float* x, int64_t ldx, const PackedLut& W, float* y, int64_t ldy,
                const Epilogue& ep, int T) {
  parallel_for(W.N, T, 16, [&](int64_t a, int64_t b) {
    float acc[64];
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t c0 = a; c0 < b; c0 += 64) {
        const int64_t c1 = std::min(b, c0 + 64);
        for (int64_t n = c0; n < c1; ++n) {
          float s = 0.f;
          for (int64_t k = 0; k < W.K; ++k) s += table_value(W, n, k) * x[m * ldx + k];
          acc[n - c0] = s;
        }
        epilogue_row(y + m * ldy + c0, acc, c1 - c0, c0, W, ep,
                     ep.residual ? ep.residual + m * ep.ldr + c0 : nullptr, Isa::Scalar);
      }
    }
  });
}

void run_rows(int64_t M, const float* x, int64_t ldx, const PackedLut& W, float* y, int64_t ldy,
              const Epilogue& ep, float* xs, int T) {
  const detail::LutRowsFn kern = kernel_for(W.isa);
  const detail::LutView view{W.idx.get(), W.lut.get(), W.row_bytes, W.sb, W.table, W.per_row};
  const int64_t Kp = kpad(W), K = W.K;
  // activations copied once into rows of Kp floats, zero past K
  parallel_for(M, T, 16, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      std::memcpy(xs + m * Kp, x + m * ldx, sizeof(float) * K);
      std::fill(xs + m * Kp + K, xs + (m + 1) * Kp, 0.f);
    }
  });
  // 4-row groups of W split over the threads (a few parts per thread for balance)
  const int64_t groups = (W.N + 3) / 4;
  const int64_t parts = std::min<int64_t>(groups, T == 1 ? 1 : int64_t(T) * 4);
  ThreadPool::global().run(parts, static_cast<int>(std::min<int64_t>(T, parts)), [&](int64_t p) {
    const int64_t r0 = groups * p / parts * 4, r1 = std::min(W.N, groups * (p + 1) / parts * 4);
    float acc[kP * kChunk];
    for (int64_t c0 = r0; c0 < r1; c0 += kChunk) {
      const int64_t c1 = std::min(r1, c0 + kChunk), c1r = (c1 + 3) / 4 * 4;
      for (int64_t m0 = 0; m0 < M; m0 += kP) {
        const int pm = static_cast<int>(std::min<int64_t>(kP, M - m0));
        kern(view, c0, c1r, xs + m0 * Kp, Kp, pm, acc, kChunk);
        for (int q = 0; q < pm; ++q) {
          const int64_t m = m0 + q;
          epilogue_row(y + m * ldy + c0, acc + q * kChunk, c1 - c0, c0, W, ep,
                       ep.residual ? ep.residual + m * ep.ldr + c0 : nullptr, W.isa);
        }
      }
    }
  });
}

}  // namespace

size_t PackedLut::bytes() const {
  return size_t(Npad) * row_bytes + sizeof(float) * size_t(per_row ? Npad : 1) * table +
         (row_scale ? sizeof(float) * N : 0);
}

std::unique_ptr<PackedLut> pack_codebook(const uint8_t* packed, int64_t N, int64_t K, int bits, const float* lut,
                                         int64_t lut_size, bool per_row, Isa isa) {
  if (bits < 1 || bits > 8) bad("codebook index width must be 1..8 bits");
  if (lut_size < 1 || lut_size > (int64_t{1} << bits)) bad("codebook size must be 1..2^bits");
  if ((N > 0 && K > 0 && !packed) || !lut) bad("null array");
  auto p = alloc_layout(N, K, bits, per_row, isa);
  const uint32_t maxc = fill_indices(*p, packed);
  if (N > 0 && K > 0 && maxc >= uint32_t(lut_size))
    bad("codebook index " + std::to_string(maxc) + " >= codebook size " + std::to_string(lut_size));
  for (int64_t g = 0; g < (per_row ? N : 1); ++g)
    fill_table(p->lut.get() + g * p->table, p->table, p->sb, lut + g * lut_size, lut_size);
  return p;
}

std::unique_ptr<PackedLut> pack_log2(const uint8_t* packed, int64_t N, int64_t K, int bits, const float* scale,
                                     int64_t n_scale, Isa isa) {
  if (bits < 2 || bits > 8) bad("log2 code width must be 2..8 bits");
  if ((N > 0 && K > 0 && !packed) || !scale) bad("null array");
  if (n_scale != 1 && n_scale != N) bad("log2 scale needs 1 or N values");
  auto p = alloc_layout(N, K, bits, false, isa);
  p->log2 = true;
  fill_indices(*p, packed);
  // L2[code] = 0 for code 0, else sign * 2^-(mag-1)
  std::vector<float> l2(size_t(1) << bits);
  for (uint32_t c = 0; c < l2.size(); ++c) {
    const uint32_t mag = c & ((1u << (bits - 1)) - 1);
    const float sign = (c >> (bits - 1)) ? -1.f : 1.f;
    l2[c] = c == 0 ? 0.f : sign * std::ldexp(1.f, 1 - int(mag));
  }
  fill_table(p->lut.get(), p->table, p->sb, l2.data(), int64_t(l2.size()));
  p->row_scale = aligned_array<float>(std::max<int64_t>(N, 1));
  for (int64_t n = 0; n < N; ++n) p->row_scale[n] = scale[n_scale == 1 ? 0 : n];
  return p;
}

size_t lut_dense_workspace(int64_t M, const PackedLut& W, int threads) {
  return (size_t(std::max<int64_t>(M, 1)) * kpad(W) + 16) * sizeof(float) + 64;
}

void lut_dense(int64_t M, const float* x, int64_t ldx, const PackedLut& W, float* y, int64_t ldy,
               const Epilogue& ep, void* ws, int threads) {
  if (M < 0) bad("negative M");
  if (M == 0 || W.N == 0) return;
  if (!x || !y) bad("null pointer");
  if (M > 1 && (ldx < W.K || ldy < W.N)) bad("leading dimension smaller than the row");
  if (static_cast<int>(ep.act) < 0 || static_cast<int>(ep.act) >= kNumActs) bad("unknown activation");
  if (!isa_supported(W.isa)) fail(Code::Unsupported, "lutgemm: the matrix was packed for an ISA this CPU lacks");
  check_residual(M, W.N, y, ldy, ep, "lutgemm");
  int T = clamp_threads(threads);
  if (double(M) * W.N * W.K < 65536.0) T = 1;
  if (W.isa == Isa::Scalar) {
    run_scalar(M, x, ldx, W, y, ldy, ep, T);
    return;
  }
  AlignedPtr<char> own;
  if (!ws) {
    own = aligned_array<char>(lut_dense_workspace(M, W, threads));
    ws = own.get();
  }
  run_rows(M, x, ldx, W, y, ldy, ep, static_cast<float*>(ws), T);
}

// ---- convolution -------------------------------------------------------------

size_t lut_conv2d_workspace(const Conv2dShape& s, const PackedLut& W, int threads) {
  const int64_t M = s.N * s.OH() * s.OW();
  const int64_t rows = s.plain_1x1() ? M : std::min(M, kLutConvRows);
  return conv_cols_bytes(s, kLutConvRows) + lut_dense_workspace(rows, W, threads);
}

namespace {
// Rows [g*Og, (g+1)*Og) of W as a shallow, non-owning view (released by the destructor).
struct GroupView {
  PackedLut v;
  GroupView(const PackedLut& W, int64_t g, int64_t Og) {
    v.N = Og; v.K = W.K; v.bits = W.bits; v.sb = W.sb; v.lanes = W.lanes; v.per_row = W.per_row;
    v.log2 = W.log2; v.isa = W.isa; v.Npad = W.Npad - g * Og; v.kblock = W.kblock; v.nblocks = W.nblocks;
    v.row_bytes = W.row_bytes; v.table = W.table;
    v.idx.reset(W.idx.get() + g * Og * W.row_bytes);
    v.lut.reset(W.lut.get() + (W.per_row ? g * Og * W.table : 0));
    if (W.row_scale) v.row_scale.reset(W.row_scale.get() + g * Og);
  }
  ~GroupView() { (void)v.idx.release(); (void)v.lut.release(); (void)v.row_scale.release(); }
  GroupView(const GroupView&) = delete;
  GroupView& operator=(const GroupView&) = delete;
};
}  // namespace

void lut_conv2d(const Conv2dShape& s, const float* x, const PackedLut& W, float* y, const Epilogue& ep,
                void* ws, int threads) {
  check_conv_shape(s, W.N, W.K, "lutgemm conv2d");
  const int64_t G = s.groups, Og = s.O / G;
  if (G > 1 && (Og % 4)) bad("grouped LUT convolution needs O/groups to be a multiple of 4");
  if (s.N == 0) return;
  if (!x || !y) bad("null pointer");
  const int64_t M = s.N * s.OH() * s.OW();
  check_residual(M, s.O, y, s.O, ep, "lutgemm");
  AlignedPtr<char> own;
  if (!ws) {
    own = aligned_array<char>(lut_conv2d_workspace(s, W, threads));
    ws = own.get();
  }
  std::vector<std::unique_ptr<GroupView>> views;
  for (int64_t g = 0; g < G; ++g) views.push_back(std::make_unique<GroupView>(W, g, Og));
  conv_by_row_blocks(s, x, y, ep, ws, kLutConvRows,
                     [&](int64_t g, int64_t rows, const float* a, int64_t lda, float* yg, int64_t ldy,
                         const Epilogue& e, void* rest) { lut_dense(rows, a, lda, views[g]->v, yg, ldy, e, rest, threads); });
}

}  // namespace slimrt::kernels

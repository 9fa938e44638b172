// Int8-table LUT-GEMM driver (baseline x86-64): packing of codebook / log2 indices and their
// int8 tables into the lutq8.h layout, activation quantization (qgemm's quantize_rows_u8),
// threading over row groups, the zero-point correction and float epilogue, the scalar
// reference kernel and the im2col convolution. See lutq8.h.
#include "kernels/lutgemm/lutq8.h"

#include "kernels/gemm/conv_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/threadpool.h"
#include "kernels/lutgemm/lutq8_internal.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/qgemm/qgemm_internal.h"
#include "kernels/spmm/spmm.h"

namespace slimrt::kernels {
namespace {

using detail::kLutQ8MaxP;
constexpr int64_t kChunkGroups = 16;  // row groups (64 rows) per accumulator chunk

[[noreturn]] void bad(const std::string& m) { fail(Code::InvalidArgument, "lutq8: " + m); }

int clamp_threads(int t) { return t <= 0 ? default_threads() : t; }

// Code i of an LSB-first bit stream of nbytes bytes.
inline uint32_t code_at(const uint8_t* packed, int64_t i, int bits, int64_t nbytes) {
  const int64_t bit = i * bits, byte = bit >> 3;
  const int sh = static_cast<int>(bit & 7);
  uint32_t v = packed[byte];
  if (sh + bits > 8 && byte + 1 < nbytes) v |= uint32_t(packed[byte + 1]) << 8;
  return (v >> sh) & ((1u << bits) - 1);
}

// Scalar reference over the packed layout (same contract as the SIMD kernels).
void rows_scalar(const detail::LutQ8View& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int p,
                 bool /*bcast: never asked of it*/, int32_t* out, int64_t ldo) {
  const int S = 8 / w.sb, KB = 128 / w.sb;
  const uint32_t mask = (1u << w.sb) - 1;
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* gp = w.idx + g * w.nblocks * 64;
    const int8_t* tab = w.table + g * 64;
    for (int i = 0; i < 4; ++i)
      for (int q = 0; q < p; ++q) {
        int32_t s = 0;
        for (int64_t b = 0; b < w.nblocks; ++b)
          for (int j = 0; j < S; ++j)
            for (int pp = 0; pp < 16; ++pp) {
              const uint32_t c = (gp[b * 64 + i * 16 + pp] >> (j * w.sb)) & mask;
              s += int32_t(xq[q * ldx + b * KB + 16 * j + pp]) * tab[i * 16 + c];
            }
        out[q * ldo + 4 * (g - g0) + i] = s;
      }
  }
}

detail::LutQ8RowsFn kernel_for(Isa isa, bool vbmi) {
  if (isa >= Isa::Avx512Vnni) return vbmi ? detail::vbmi::lutq8_rows : detail::vnni::lutq8_rows;
  if (isa == Isa::Scalar) return rows_scalar;
  return nullptr;
}

std::unique_ptr<PackedLutQ8> alloc_layout(int64_t N, int64_t K, int bits, Isa isa) {
  if (N < 0 || K < 0) bad("negative size");
  if (K > kQ8MaxK)
    bad("K = " + std::to_string(K) + " exceeds " + std::to_string(kQ8MaxK) +
        " (int32 accumulators could overflow: |acc| <= K*255*128)");
  if (static_cast<int>(isa) < 0 || static_cast<int>(isa) > static_cast<int>(Isa::Amx)) bad("unknown ISA");
  if (!isa_supported(isa)) fail(Code::Unsupported, std::string("lutq8: ISA ") + isa_name(isa) + " not supported");
  if (!lutq8_has_kernel(isa))
    fail(Code::Unsupported, std::string("lutq8: no int8-table kernel for ISA ") + isa_name(isa) +
                                " (use the fp32-table LUT kernels)");
  auto p = std::make_unique<PackedLutQ8>();
  p->N = N; p->K = K; p->bits = bits; p->isa = isa;
  p->sb = bits <= 2 ? bits : 4;
  p->groups = (N + 3) / 4;
  p->kb = 128 / p->sb;
  p->nblocks = std::max<int64_t>(1, (K + p->kb - 1) / p->kb);
  p->Kp = p->nblocks * p->kb;
  uint64_t total = 0;
  if (mul_overflow_u64(uint64_t(p->groups) * 64, uint64_t(p->nblocks), &total) || total > (uint64_t{1} << 40))
    bad("matrix too large");
  p->idx = aligned_array<uint8_t>(std::max<uint64_t>(total, 64));
  std::memset(p->idx.get(), 0, std::max<uint64_t>(total, 64));
  const int64_t rows = std::max<int64_t>(p->groups, 1) * 4;
  p->table = aligned_array<int8_t>(rows * 16);
  std::memset(p->table.get(), 0, rows * 16);
  p->row_scale = aligned_array<float>(rows);
  std::fill(p->row_scale.get(), p->row_scale.get() + rows, 1.f);
  p->rowsum = aligned_array<int32_t>(rows);
  std::memset(p->rowsum.get(), 0, sizeof(int32_t) * rows);
  return p;
}

// Scatters the codes into the layout and sums each row's table values; returns the largest code.
uint32_t fill_indices(PackedLutQ8& p, const uint8_t* packed) {
  const int64_t nbytes = (p.N * p.K * p.bits + 7) / 8;
  uint32_t maxc = 0;
  for (int64_t n = 0; n < p.N; ++n) {
    uint8_t* gp = p.idx.get() + (n / 4) * p.nblocks * 64 + (n % 4) * 16;
    for (int64_t k = 0; k < p.K; ++k) {
      const uint32_t c = code_at(packed, n * p.K + k, p.bits, nbytes);
      maxc = std::max(maxc, c);
      const int64_t b = k / p.kb, rem = k % p.kb;
      gp[b * 64 + rem % 16] |= uint8_t(c << ((rem / 16) * p.sb));
    }
  }
  return maxc;
}

// rowsum[n] = sum over real k of table[n][code(n, k)] (read back from the packed layout).
void fill_rowsums(PackedLutQ8& p) {
  const uint32_t mask = (1u << p.sb) - 1;
  for (int64_t n = 0; n < p.N; ++n) {
    const uint8_t* gp = p.idx.get() + (n / 4) * p.nblocks * 64 + (n % 4) * 16;
    const int8_t* tab = p.table.get() + n * 16;
    int32_t s = 0;
    for (int64_t k = 0; k < p.K; ++k) {
      const int64_t b = k / p.kb, rem = k % p.kb;
      s += tab[(gp[b * 64 + rem % 16] >> ((rem / 16) * p.sb)) & mask];
    }
    p.rowsum[n] = s;
  }
}

// Row sums, and the decode kernel: vpermb when every row shares one table and the CPU has VBMI.
void finish_pack(PackedLutQ8& p) {
  fill_rowsums(p);
  p.vbmi = !p.per_row && p.isa >= Isa::Avx512Vnni && cpu_info().avx512vbmi;
}

void check_codebook(const uint8_t* packed, int64_t N, int64_t K, int bits, const void* lut, int64_t lut_size) {
  if (bits < 1 || bits > 4) bad("int8-table codebook index width must be 1..4 bits");
  if (lut_size < 1 || lut_size > (int64_t{1} << bits)) bad("codebook size must be 1..2^bits");
  if ((N > 0 && K > 0 && !packed) || !lut) bad("null array");
}

// Everything one run needs, for the whole matrix or one convolution group (row range).
struct Mat {
  detail::LutQ8View view;
  int64_t N, K, Kp;
  const float* row_scale;
  const int32_t* rowsum;
  Isa isa;
  bool vbmi;
};

Mat mat_of(const PackedLutQ8& W, int64_t g0, int64_t rows) {
  Mat m;
  m.view = {W.idx.get() + g0 * W.nblocks * 64, W.table.get() + g0 * 64, W.nblocks, W.sb};
  m.N = rows; m.K = W.K; m.Kp = W.Kp;
  m.row_scale = W.row_scale.get() + g0 * 4;
  m.rowsum = W.rowsum.get() + g0 * 4;
  m.isa = W.isa;
  m.vbmi = W.vbmi;
  return m;
}

// Raw accumulators of xq [M][Kp] (zero past K) against the row groups, handed chunk by chunk
// to fin(m0, pm, n0, cnt, acc, ldacc) with acc[q*ldacc + j] for row m0+q, column n0+j.
// xb: room for the broadcast row (4 * Kp bytes, 64-byte aligned); a single activation row runs
// from it on the SIMD kernels (a plain load per chunk instead of a load + broadcast shuffle: Zen 4,
// 1024^2 batch 1, 1 thread: 0.52 -> 0.50 ns per 64 weights).
template <typename Fin>
void run_acc(const Mat& w, int64_t M, const uint8_t* xq, uint8_t* xb, int T, const Fin& fin) {
  const detail::LutQ8RowsFn kern = kernel_for(w.isa, w.vbmi);
  const bool one_row = M == 1, bcast = one_row && w.isa != Isa::Scalar;
  if (bcast) {
    detail::vnni::lutq8_bcast_row(xq, w.Kp, xb);
    xq = xb;
  }
  const int64_t groups = (w.N + 3) / 4;
  // Batch <= kLutQ8MaxP reads the weights once: one part per thread (each core keeps its share of
  // the codes in its L2 from call to call); else 4 parts per thread.
  const bool gemv = M <= kLutQ8MaxP;
  const int64_t parts = std::min<int64_t>(groups, T == 1 ? 1 : gemv ? T : int64_t(T) * 4);
  ThreadPool::global().run(parts, static_cast<int>(std::min<int64_t>(T, parts)), [&](int64_t part) {
    const int64_t ga = groups * part / parts, gb = groups * (part + 1) / parts;
    alignas(64) int32_t acc[kLutQ8MaxP * kChunkGroups * 4];
    // one activation row: the buffer holds kLutQ8MaxP times the row groups, so a quarter of the calls
    // (1024 x 1024 batch 1: ~2% of the call)
    const int64_t cg = one_row ? kChunkGroups * kLutQ8MaxP : kChunkGroups;
    for (int64_t c0 = ga; c0 < gb; c0 += cg) {
      const int64_t c1 = std::min(gb, c0 + cg);
      const int64_t n0 = c0 * 4, cnt = std::min(w.N, c1 * 4) - n0;
      for (int64_t m0 = 0; m0 < M; m0 += kLutQ8MaxP) {
        const int pm = static_cast<int>(std::min<int64_t>(kLutQ8MaxP, M - m0));
        kern(w.view, c0, c1, xq + m0 * w.Kp, w.Kp, pm, bcast, acc, cg * 4);
        fin(m0, pm, n0, cnt, acc, cg * 4);
      }
    }
  });
}

struct DenseWs {
  uint8_t* xq;
  float* scale;
  int32_t* zero;
  uint8_t* xb;  // the broadcast row of run_acc (4 * Kp bytes)
};
DenseWs carve(void* ws, int64_t M, int64_t Kp) {
  char* p = static_cast<char*>(ws);
  DenseWs d;
  d.xq = reinterpret_cast<uint8_t*>(p);
  p += align64(size_t(M) * Kp + 64);
  d.scale = reinterpret_cast<float*>(p);
  p += align64(size_t(M) * 4);
  d.zero = reinterpret_cast<int32_t*>(p);
  p += align64(size_t(M) * 4);
  d.xb = reinterpret_cast<uint8_t*>(p);
  return d;
}
size_t ws_bytes(int64_t M, int64_t Kp) {
  M = std::max<int64_t>(M, 1);
  return align64(size_t(M) * Kp + 64) + 2 * align64(size_t(M) * 4) + align64(size_t(4) * Kp) + 64;
}

void dense_mat(const Mat& w, int64_t M, const float* x, int64_t ldx, float* y, int64_t ldy, const Epilogue& ep,
               void* ws, int T) {
  const DenseWs d = carve(ws, M, w.Kp);
  quantize_rows_u8(M, w.K, x, ldx, d.xq, w.Kp, d.scale, d.zero, w.isa, T);  // as q8_dense_dynamic
  for (int64_t m = 0; m < M; ++m) std::memset(d.xq + m * w.Kp + w.K, 0, w.Kp - w.K);
  // SIMD kernels: the int8 GEMM's AVX-512 epilogue finishes each chunk in registers (zero-point
  // correction with the row sums, a_scale * row_scale, bias, residual, activation); it has no
  // second column scale, so ep.scale takes the general loop below.
  const bool vec_epi = w.isa != Isa::Scalar && !ep.scale;
  run_acc(w, M, d.xq, d.xb, T, [&](int64_t m0, int pm, int64_t n0, int64_t cnt, const int32_t* acc, int64_t lda) {
    if (vec_epi) {
      detail::Q8Tile t;
      t.acc = acc;
      t.ldacc = lda;
      t.rows = pm;
      t.nv = static_cast<int>(cnt);
      t.colsum = w.rowsum + n0;
      t.a_zero = d.zero + m0;
      t.a_scale = d.scale + m0;
      t.a_step = 1;
      t.w_scale = w.row_scale + n0;
      t.bias = ep.bias ? ep.bias + n0 : nullptr;
      t.residual = ep.residual ? ep.residual + m0 * ep.ldr + n0 : nullptr;
      t.ldr = ep.ldr;
      t.kind = detail::Q8Out::F32;
      t.out = y + m0 * ldy + n0;
      t.ldo = ldy;
      t.act = ep.act;
      t.alpha = ep.alpha;
      detail::avx512::q8_epilogue(t);
      return;
    }
    alignas(64) float f[kLutQ8MaxP * kChunkGroups * 4];  // cnt <= run_acc's chunk
    const int32_t* rs = w.rowsum + n0;
    for (int q = 0; q < pm; ++q) {
      const int64_t m = m0 + q;
      const uint32_t z = uint32_t(d.zero[m]);
      const float as = d.scale[m];
      const int32_t* a = acc + q * lda;
      for (int64_t j = 0; j < cnt; ++j)  // exact in int32 (lutq8.h bound); wrap-safe in uint32
        f[j] = float(int32_t(uint32_t(a[j]) - z * uint32_t(rs[j]))) * as;
      epilogue_row(y + m * ldy + n0, f, cnt, w.row_scale + n0, ep, n0,
                   ep.residual ? ep.residual + m * ep.ldr + n0 : nullptr, w.isa);
    }
  });
}

void check_run(const PackedLutQ8& W) {
  if (!W.idx) bad("empty packed weights");
  if (!isa_supported(W.isa)) fail(Code::Unsupported, "lutq8: the matrix was packed for an ISA this CPU lacks");
}

int threads_for(int64_t M, const PackedLutQ8& W, int threads) {
  int T = clamp_threads(threads);
  if (double(M) * W.N * W.K < 65536.0) T = 1;
  return T;
}

}  // namespace

bool lutq8_has_kernel(Isa isa) { return isa == Isa::Scalar || isa >= Isa::Avx512Vnni; }

size_t PackedLutQ8::bytes() const {
  return size_t(groups) * nblocks * 64 + size_t(groups) * 4 * (16 + sizeof(float) + sizeof(int32_t));
}

std::unique_ptr<PackedLutQ8> pack_lutq8_codebook(const uint8_t* packed, int64_t N, int64_t K, int bits,
                                                 const int8_t* lut, int64_t lut_size, bool per_row, Isa isa) {
  check_codebook(packed, N, K, bits, lut, lut_size);
  auto p = alloc_layout(N, K, bits, isa);
  p->per_row = per_row;
  const uint32_t maxc = fill_indices(*p, packed);
  if (N > 0 && K > 0 && maxc >= uint32_t(lut_size))
    bad("codebook index " + std::to_string(maxc) + " >= codebook size " + std::to_string(lut_size));
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(p->table.get() + n * 16, lut + (per_row ? n * lut_size : 0), size_t(lut_size));
  finish_pack(*p);
  return p;
}

std::unique_ptr<PackedLutQ8> pack_lutq8_codebook_f32(const uint8_t* packed, int64_t N, int64_t K, int bits,
                                                     const float* lut, int64_t lut_size, bool per_row, Isa isa) {
  check_codebook(packed, N, K, bits, lut, lut_size);
  for (int64_t i = 0; i < (per_row ? N : 1) * lut_size; ++i)
    if (!std::isfinite(lut[i])) bad("codebook entries must be finite to round them to int8");
  auto p = alloc_layout(N, K, bits, isa);
  p->per_row = per_row;
  p->quantized = true;
  const uint32_t maxc = fill_indices(*p, packed);
  if (N > 0 && K > 0 && maxc >= uint32_t(lut_size))
    bad("codebook index " + std::to_string(maxc) + " >= codebook size " + std::to_string(lut_size));
  for (int64_t n = 0; n < N; ++n) {
    const float* t = lut + (per_row ? n * lut_size : 0);
    float amax = 0.f;
    for (int64_t e = 0; e < lut_size; ++e) amax = std::max(amax, std::fabs(t[e]));
    const float s = amax > 0.f ? amax / 127.f : 1.f;
    for (int64_t e = 0; e < lut_size; ++e)
      p->table[n * 16 + e] = int8_t(std::max(-127.f, std::min(127.f, std::nearbyint(t[e] / s))));
    p->row_scale[n] = s;
  }
  finish_pack(*p);
  return p;
}

std::unique_ptr<PackedLutQ8> pack_lutq8_log2(const uint8_t* packed, int64_t N, int64_t K, int bits,
                                             const float* scale, int64_t n_scale, Isa isa) {
  if (bits < 2 || bits > 4) bad("int8-table log2 code width must be 2..4 bits");
  if ((N > 0 && K > 0 && !packed) || !scale) bad("null array");
  if (n_scale != 1 && n_scale != N) bad("log2 scale needs 1 or N values");
  auto p = alloc_layout(N, K, bits, isa);
  p->log2 = true;
  fill_indices(*p, packed);
  // T[code] = 0 for code 0, else sign * 64 * 2^-(mag-1) = sign * 2^(7-mag): exact int8 (mag 0 -> -128)
  int8_t t[16] = {};
  for (uint32_t c = 1; c < (1u << bits); ++c) {
    const int mag = int(c & ((1u << (bits - 1)) - 1));
    const int v = 1 << (7 - mag);
    t[c] = int8_t((c >> (bits - 1)) ? -v : v);  // +128 (mag 0, sign +) is code 0 -> never produced
  }
  for (int64_t n = 0; n < N; ++n) {
    std::memcpy(p->table.get() + n * 16, t, 16);
    p->row_scale[n] = scale[n_scale == 1 ? 0 : n] / 64.f;
  }
  finish_pack(*p);
  return p;
}

size_t lutq8_dense_workspace(int64_t M, const PackedLutQ8& W, int threads) { return ws_bytes(M, W.Kp); }

void lutq8_dense(int64_t M, const float* x, int64_t ldx, const PackedLutQ8& W, float* y, int64_t ldy,
                 const Epilogue& ep, void* ws, int threads) {
  if (M < 0) bad("negative M");
  check_run(W);
  if (M == 0 || W.N == 0) return;
  if (!x || !y) bad("null pointer");
  if (M > 1 && (ldx < W.K || ldy < W.N)) bad("leading dimension smaller than the row");
  if (static_cast<int>(ep.act) < 0 || static_cast<int>(ep.act) >= kNumActs) bad("unknown activation");
  check_residual(M, W.N, y, ldy, ep, "lutq8");
  AlignedPtr<char> own;
  if (!ws) {
    own = aligned_array<char>(lutq8_dense_workspace(M, W, threads));
    ws = own.get();
  }
  dense_mat(mat_of(W, 0, W.N), M, x, ldx, y, ldy, ep, ws, threads_for(M, W, threads));
}

void lutq8_gemm_acc(int64_t M, const uint8_t* Aq, int64_t lda, int32_t a_zero, const PackedLutQ8& W,
                    int32_t* acc, int64_t ldacc, void* ws, int threads) {
  if (M < 0) bad("negative M");
  check_run(W);
  if (a_zero < 0 || a_zero > 255) bad("a_zero must be in [0, 255]");
  if (M == 0 || W.N == 0) return;
  if (!Aq || !acc) bad("null pointer");
  if (M > 1 && (lda < W.K || ldacc < W.N)) bad("leading dimension smaller than the row");
  AlignedPtr<char> own;
  if (!ws) {
    own = aligned_array<char>(lutq8_dense_workspace(M, W, threads));
    ws = own.get();
  }
  const DenseWs d = carve(ws, M, W.Kp);
  for (int64_t m = 0; m < M; ++m) {
    std::memcpy(d.xq + m * W.Kp, Aq + m * lda, size_t(W.K));
    std::memset(d.xq + m * W.Kp + W.K, 0, size_t(W.Kp - W.K));
  }
  const Mat w = mat_of(W, 0, W.N);
  run_acc(w, M, d.xq, d.xb, threads_for(M, W, threads),
          [&](int64_t m0, int pm, int64_t n0, int64_t cnt, const int32_t* a, int64_t lda_) {
            for (int q = 0; q < pm; ++q)
              for (int64_t j = 0; j < cnt; ++j)
                acc[(m0 + q) * ldacc + n0 + j] =
                    int32_t(uint32_t(a[q * lda_ + j]) - uint32_t(a_zero) * uint32_t(w.rowsum[n0 + j]));
          });
}

// ---- convolution -------------------------------------------------------------

size_t lutq8_conv2d_workspace(const Conv2dShape& s, const PackedLutQ8& W, int threads) {
  const int64_t M = s.N * s.OH() * s.OW();
  return conv_cols_bytes(s, kLutQ8ConvRows) + ws_bytes(s.plain_1x1() ? M : std::min(M, kLutQ8ConvRows), W.Kp) + 64;
}

void lutq8_conv2d(const Conv2dShape& s, const float* x, const PackedLutQ8& W, float* y, const Epilogue& ep,
                  void* ws, int threads) {
  check_conv_shape(s, W.N, W.K, "lutq8 conv2d");
  check_run(W);
  const int64_t G = s.groups, Og = s.O / G, Kc = W.K;
  if (G > 1 && (Og % 4)) bad("grouped LUT convolution needs O/groups to be a multiple of 4");
  if (static_cast<int>(ep.act) < 0 || static_cast<int>(ep.act) >= kNumActs) bad("unknown activation");
  if (s.N == 0) return;
  if (!x || !y) bad("null pointer");
  const int64_t M = s.N * s.OH() * s.OW();
  check_residual(M, s.O, y, s.O, ep, "lutq8");
  AlignedPtr<char> own;
  if (!ws) {
    own = aligned_array<char>(lutq8_conv2d_workspace(s, W, threads));
    ws = own.get();
  }
  conv_by_row_blocks(s, x, y, ep, ws, kLutQ8ConvRows,
                     [&](int64_t g, int64_t rows, const float* a, int64_t lda, float* yg, int64_t ldy,
                         const Epilogue& e, void* rest) {
                       const int T = clamp_threads(threads) > 1 && double(rows) * Og * Kc >= 65536.0
                                         ? clamp_threads(threads) : 1;
                       dense_mat(mat_of(W, g * Og / 4, Og), rows, a, lda, yg, ldy, e, rest, T);
                     });
}

}  // namespace slimrt::kernels

// CSR SpMM driver (baseline x86-64): validation and packing, the path choice
// (sliced-ELL or gather GEMV vs transposed-x tiles), the batch-1 layout builder and
// the rule choosing it, nnz-balanced threading, the epilogue, the scalar reference
// path and the im2col convolution. See spmm.h.
#include "kernels/spmm/spmm.h"

#include "kernels/gemm/conv_rows.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/threadpool.h"
#include "kernels/gemm/sgemm.h"
#include "kernels/spmm/spmm_internal.h"

namespace slimrt::kernels {
namespace {

constexpr int64_t kRowChunk = 64;              // CSR rows per accumulator tile
constexpr int64_t kXtBudget = 512 << 10;       // bytes of one transposed x block (L2)
constexpr int64_t kRowCost = 8;                // per-row overhead in nnz units (balancing)
constexpr double kL2Bytes = 1 << 20;           // sell_pays: beyond this the sliced ELL's steps come from L3
constexpr double kCacheBytes = 8 << 20;        // sell_pays: beyond this a layout streams from L3/DRAM
constexpr double kBytesPerNs = 30;             // ... at about this rate (one core)

[[noreturn]] void bad(const std::string& m) { fail(Code::InvalidArgument, "csr: " + m); }

// Modelled batch-1 costs (about ns on one Zen 4 core; least-squares fit to 1-thread runs of both
// f32 layouts forced through SLIMRT_CSR_LAYOUT, K x N in {1024, 4096}^2, 512 x 2048, 2048 x 512,
// sparsity 0.5 .. 0.999; codes and int8 steps scaled from earlier per-kind runs): the gather GEMV
// costs gather_nnz per non-zero + gather_row per row; the sliced-ELL GEMV step[vkind] per step (L
// lanes; x far when its bytes exceed kL2Bytes) + block per window position + slice per slice.
// Past kCacheBytes a layout also costs at least bytes / kBytesPerNs. See sell_pays().
struct SellCosts {
  double gather_nnz, gather_row, step[4], far, block, slice;
};

struct IsaKernels {
  int lanes;
  detail::CsrGemvFn gemv;
  detail::CsrTileFn tile;
  detail::SellGemvFn sell;
  int sell_rows;     // activation rows one sell call can take
  int64_t sell_max;  // batches below this run the sliced-ELL layout when there is one
  int advance;       // sliced ELL: columns between window positions (windows are 2 * lanes wide)
  SellCosts cost;
};

const IsaKernels* kernels_for(Isa isa) {
  static const IsaKernels k2{detail::avx2::kCsrLanes, detail::avx2::csr_gemv, detail::avx2::csr_tile,
                             detail::avx2::sell_gemv, detail::avx2::kSellRows, kCsrSellMaxMAvx2, 16,
                             {0.39, 1.0, {0.55, 0.55, 0.62, 0.70}, 2.0, 2.37, 2.0}};
  static const IsaKernels k512{detail::avx512::kCsrLanes, detail::avx512::csr_gemv, detail::avx512::csr_tile,
                               detail::avx512::sell_gemv, detail::avx512::kSellRows, kCsrSellMaxM, 16,
                               {0.29, 7.8, {0.59, 0.59, 0.64, 0.75}, 3.0, 1.4, 2.0}};
  if (isa >= Isa::Avx512) return &k512;
  if (isa == Isa::Avx2) return &k2;
  return nullptr;
}

int64_t idx_at(const void* p, CsrType t, int64_t i) {
  switch (t) {
    case CsrType::U16: return static_cast<const uint16_t*>(p)[i];
    case CsrType::I32: return static_cast<const int32_t*>(p)[i];
    case CsrType::I64: return static_cast<const int64_t*>(p)[i];
    default: return -1;
  }
}

// Activation rows per transposed block: a multiple of the ISA's lanes, at most 4
// vectors, the xt block K x mb within kXtBudget, and no wider than M needs.
int pick_mb(int64_t M, int64_t K, int lanes) {
  int nv = 4;
  while (nv > 1 && K * lanes * nv * 4 > kXtBudget) --nv;
  const int64_t need = (M + lanes - 1) / lanes;
  nv = static_cast<int>(std::min<int64_t>(nv, std::max<int64_t>(1, need)));
  return nv * lanes;
}

bool use_tiles(int64_t M, const PackedCsr& W) { return W.isa != Isa::Scalar && M >= kCsrGemvMaxM; }

int clamp_threads(int t) { return t <= 0 ? default_threads() : t; }

// Row ranges [b[i], b[i+1]) of equal cost (nnz + kRowCost per row), `parts` of them.
std::vector<int64_t> balance_rows(const int64_t* indptr, int64_t r0, int64_t r1, int64_t parts) {
  std::vector<int64_t> b(parts + 1, r1);
  b[0] = r0;
  const double total = double(indptr[r1] - indptr[r0]) + double(kRowCost) * (r1 - r0);
  int64_t r = r0;
  for (int64_t p = 1; p < parts; ++p) {
    const double target = total * p / parts;
    // first row whose prefix cost reaches the target (cost is monotone in r)
    int64_t lo = r, hi = r1;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      const double c = double(indptr[mid] - indptr[r0]) + double(kRowCost) * (mid - r0);
      if (c < target) lo = mid + 1; else hi = mid;
    }
    r = lo;
    b[p] = r;
  }
  return b;
}


void check_args(int64_t M, const float* x, int64_t ldx, const PackedCsr& W, const float* y, int64_t ldy,
                const Epilogue& ep) {
  if (M < 0) bad("negative M");
  if (M == 0 || W.N == 0) return;
  if (!x || !y) bad("null pointer");
  if (M > 1 && (ldx < W.K || ldy < W.N)) bad("leading dimension smaller than the row");
  if (static_cast<int>(ep.act) < 0 || static_cast<int>(ep.act) >= kNumActs) bad("unknown activation");
  if (!isa_supported(W.isa)) fail(Code::Unsupported, "csr: the matrix was packed for an ISA this CPU lacks");
  check_residual(M, W.N, y, ldy, ep, "csr");
}

// Rows [r0, r1) of W (y, ep pointers relative to column r0). x rows ldx apart.
void run_rows(int64_t M, const float* x, int64_t ldx, const PackedCsr& W, int64_t r0, int64_t r1, float* y,
              int64_t ldy, const Epilogue& ep, float* ws, int threads) {
  const int64_t K = W.K;
  const float* rs = W.row_scale ? W.row_scale.get() + r0 : nullptr;
  const int64_t tstride = W.table_rows > 1 ? kCsrMaxTable : 0;
  const detail::CsrView view{W.indptr.get(), W.indices.get(), W.values.get(), W.idx16, W.int8, W.codes,
                             W.codes ? W.table.get() + (tstride ? r0 * tstride : 0) : nullptr, tstride};
  const int64_t nnz = W.indptr[r1] - W.indptr[r0];
  const double work = double(M) * double(nnz + kRowCost * (r1 - r0));
  int T = clamp_threads(threads);
  if (work < 32768) T = 1;
  T = static_cast<int>(std::min<int64_t>(T, std::max<int64_t>(1, (r1 - r0) / 4)));

  if (W.isa == Isa::Scalar) {
    parallel_for(r1 - r0, T, 1, [&](int64_t a, int64_t b) {
      float acc[kRowChunk];
      for (int64_t m = 0; m < M; ++m) {
        const float* xr = x + m * ldx;
        for (int64_t c0 = a; c0 < b; c0 += kRowChunk) {
          const int64_t c1 = std::min(b, c0 + kRowChunk);
          for (int64_t n = c0; n < c1; ++n) {
            float s = 0.f;
            for (int64_t j = W.indptr[r0 + n]; j < W.indptr[r0 + n + 1]; ++j) {
              const int64_t col = W.idx16 ? reinterpret_cast<const uint16_t*>(W.indices.get())[j]
                                          : reinterpret_cast<const int32_t*>(W.indices.get())[j];
              const float v =
                  W.codes ? W.table[(W.table_rows > 1 ? (r0 + n) * kCsrMaxTable : 0) + W.values[j]]
                  : W.int8 ? float(reinterpret_cast<const int8_t*>(W.values.get())[j])
                           : reinterpret_cast<const float*>(W.values.get())[j];
              s += v * xr[col];
            }
            acc[n - c0] = s;
          }
          epilogue_row(y + m * ldy + c0, acc, c1 - c0, rs ? rs + c0 : nullptr, ep, c0,
                       ep.residual ? ep.residual + m * ep.ldr + c0 : nullptr, Isa::Scalar);
        }
      }
    });
    return;
  }

  const IsaKernels* kr = kernels_for(W.isa);
  const int64_t parts = T == 1 ? 1 : int64_t(T) * 4;
  const std::vector<int64_t> bounds = balance_rows(W.indptr.get(), r0, r1, parts);
  if (!use_tiles(M, W)) {
    ThreadPool::global().run(parts, T, [&](int64_t p) {
      float acc[kRowChunk];
      for (int64_t m = 0; m < M; ++m) {
        const float* xr = x + m * ldx;
        for (int64_t c0 = bounds[p]; c0 < bounds[p + 1]; c0 += kRowChunk) {
          const int64_t c1 = std::min(bounds[p + 1], c0 + kRowChunk);
          kr->gemv(view, c0, c1, xr, acc);
          const int64_t o = c0 - r0;
          epilogue_row(y + m * ldy + o, acc, c1 - c0, rs ? rs + o : nullptr, ep, o,
                       ep.residual ? ep.residual + m * ep.ldr + o : nullptr, W.isa);
        }
      }
    });
    return;
  }

  // Transposed x blocks: xt[blk][K][mb], lanes past M zero.
  const int mb = pick_mb(M, K, kr->lanes);
  const int64_t nblk = (M + mb - 1) / mb;
  float* xt = ws;
  parallel_for(K, T, 256, [&](int64_t k0, int64_t k1) {
    for (int64_t b = 0; b < nblk; ++b) {
      float* dst = xt + b * K * mb;
      const int64_t m0 = b * mb, mr = std::min<int64_t>(mb, M - m0);
      for (int64_t k = k0; k < k1; ++k) {
        float* d = dst + k * mb;
        for (int64_t i = 0; i < mr; ++i) d[i] = x[(m0 + i) * ldx + k];
        for (int64_t i = mr; i < mb; ++i) d[i] = 0.f;
      }
    }
  });
  ThreadPool::global().run(parts, T, [&](int64_t p) {
    alignas(64) float acc[kRowChunk * 64];  // kRowChunk rows x mb accumulators
    float row[kRowChunk];
    for (int64_t b = 0; b < nblk; ++b) {
      const int64_t m0 = b * mb, mr = std::min<int64_t>(mb, M - m0);
      for (int64_t c0 = bounds[p]; c0 < bounds[p + 1]; c0 += kRowChunk) {
        const int64_t c1 = std::min(bounds[p + 1], c0 + kRowChunk);
        kr->tile(view, c0, c1, xt + b * K * mb, mb, acc);
        const int64_t o = c0 - r0;
        for (int64_t i = 0; i < mr; ++i) {
          const int64_t m = m0 + i;
          for (int64_t n = 0; n < c1 - c0; ++n) row[n] = acc[n * mb + i];
          epilogue_row(y + m * ldy + o, row, c1 - c0, rs ? rs + o : nullptr, ep, o,
                       ep.residual ? ep.residual + m * ep.ldr + o : nullptr, W.isa);
        }
      }
    }
  });
}

// ---- sliced-ELL batch-1 path --------------------------------------------------

// Layout forced by SLIMRT_CSR_LAYOUT: 0 auto, 1 csr (never build), 2 sell (always when possible).
int forced_layout() {
  const char* e = std::getenv("SLIMRT_CSR_LAYOUT");
  if (!e) return 0;
  if (!std::strcmp(e, "csr")) return 1;
  if (!std::strcmp(e, "sell")) return 2;
  return 0;
}

double mem_time(double bytes) { return bytes > kCacheBytes ? bytes / kBytesPerNs : 0.0; }

// Modelled batch-1 time of the sliced-ELL layout s (its vkind, steps and bytes).
double sell_time(const CsrSell& s, const SellCosts& c) {
  const double b = double(s.bytes());
  return std::max(double(s.steps) * c.step[s.vkind] * (b > kL2Bytes ? c.far : 1.0) +
                      double(s.slices) * (double(s.nb) * c.block + c.slice),
                  mem_time(b));
}

// The rule: build the batch-1 layout when its modelled time is below 0.9 x the gather GEMV's
// and its bytes stay within kCsrSellMaxBytes x the CSR arrays'.
bool sell_pays(const PackedCsr& p, const CsrSell& s, const SellCosts& c) {
  const double cb = double(p.bytes());
  const double t_csr = std::max(double(p.nnz) * c.gather_nnz + double(p.N) * c.gather_row, mem_time(cb));
  return sell_time(s, c) < 0.9 * t_csr && double(s.bytes()) <= kCsrSellMaxBytes * cb;
}

// Builds p.sell (see CsrSell in spmm.h) when the rule (or SLIMRT_CSR_LAYOUT) asks for it.
void build_sell(PackedCsr& p) {
  const IsaKernels* kr = kernels_for(p.isa);
  const int force = forced_layout();
  if (!kr || force == 1 || p.N == 0 || p.K == 0 || p.N > (int64_t{1} << 30)) return;
  const int L = kr->lanes;
  auto s = std::make_unique<CsrSell>();
  s->lanes = L;
  s->block = 2 * L;
  bool shared = p.codes && p.table_rows == 1;
  if (p.codes && !shared) {  // per-row tables that are all equal run as one shared table
    shared = true;
    for (int64_t r = 1; r < p.table_rows && shared; ++r)
      shared = !std::memcmp(p.table.get(), p.table.get() + r * kCsrMaxTable, sizeof(float) * kCsrMaxTable);
  }
  int zero_code = -1;  // padding by a code whose table entry is 0 (unused entries are 0) ...
  bool finite = true;  // ... else by index bit 7, masked to 0 (needs finite entries: 0 * inf)
  if (shared)
    for (int e = kCsrMaxTable - 1; e >= 0; --e) {
      if (p.table[e] == 0.f && zero_code < 0) zero_code = e;
      finite = finite && std::isfinite(p.table[e]);
    }
  s->vkind = p.int8 ? 1 : !shared ? 0 : zero_code >= 0 ? 2 : finite ? 3 : 0;
  if (s->vkind >= 2) std::memcpy(s->table, p.table.get(), sizeof(s->table));
  s->slices = (p.N + L - 1) / L;
  // window positions: position b reads x[b*A, b*A + 2L) (A = kr->advance: L, overlapping windows,
  // or 2L); the last window is the first that reaches K
  const int64_t A = kr->advance, W = 2 * L;
  s->advance = static_cast<int>(A);
  s->nb = p.K <= W ? 1 : (p.K - W + A - 1) / A + 1;
  const int64_t nb = s->nb;
  // (slice, position) pairs far beyond the non-zeros: the position loop alone would cost more
  // than the gather GEMV (and the counts would take memory), so do not even count
  const double pairs = double(s->slices) * double(nb);
  if (pairs > double(1 << 28) || (force != 2 && pairs > 8.0 * double(p.nnz) + 4096)) return;
  auto col = [&](int64_t j) -> int64_t {
    return p.idx16 ? reinterpret_cast<const uint16_t*>(p.indices.get())[j]
                   : reinterpret_cast<const int32_t*>(p.indices.get())[j];
  };
  // rows sorted by count (descending, stable) within each window: lane position -> row
  const int64_t P = s->slices * L;
  s->perm = aligned_array<int32_t>(P);
  for (int64_t w0 = 0; w0 < P; w0 += kCsrSellWindow) {
    const int64_t w1 = std::min(P, w0 + kCsrSellWindow), r1 = std::min(p.N, w1);
    for (int64_t q = w0; q < w1; ++q) s->perm[q] = q < r1 ? static_cast<int32_t>(q) : -1;
    std::stable_sort(s->perm.get() + w0, s->perm.get() + std::max(w0, r1), [&](int32_t a, int32_t b) {
      return p.indptr[a + 1] - p.indptr[a] > p.indptr[b + 1] - p.indptr[b];
    });
  }
  // The schedule of one slice: each lane's non-zeros in column order. A non-zero in column c must
  // be taken by position min(c / A, nb - 1), the last window that holds it; position b takes as
  // many steps as the lane with the most such non-zeros, and every lane fills those steps with
  // its next non-zeros inside the window (working ahead, so the next positions need fewer).
  // on_position(b, steps), then on_entry(step, lane, j, column in the window) per non-zero.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> lane(L);  // (column, CSR element)
  std::vector<int64_t> ptr(L);
  auto schedule = [&](int64_t sl, auto&& on_position, auto&& on_entry) -> bool {
    for (int l = 0; l < L; ++l) {
      lane[l].clear();
      ptr[l] = 0;
      const int64_t r = s->perm[sl * L + l];
      if (r < 0) continue;
      for (int64_t j = p.indptr[r]; j < p.indptr[r + 1]; ++j) lane[l].emplace_back(col(j), j);
      std::sort(lane[l].begin(), lane[l].end());
    }
    for (int64_t b = 0; b < nb; ++b) {
      int64_t need = 0;
      for (int l = 0; l < L; ++l) {
        int64_t q = ptr[l];
        while (q < int64_t(lane[l].size()) && std::min(lane[l][q].first / A, nb - 1) <= b) ++q;
        need = std::max(need, q - ptr[l]);
      }
      if (need > 255) return false;  // repeated columns: keep the gather GEMV
      const int64_t end = b * A + W;
      on_position(b, need);
      for (int l = 0; l < L; ++l)
        for (int64_t t = 0; t < need && ptr[l] < int64_t(lane[l].size()) && lane[l][ptr[l]].first < end;
             ++t, ++ptr[l])
          on_entry(t, l, lane[l][ptr[l]].second, lane[l][ptr[l]].first - b * A);
    }
    return true;
  };
  // pass 1: steps per (slice, position)
  s->cnt = aligned_array<uint8_t>(s->slices * nb + 64);
  s->off = aligned_array<int64_t>(s->slices + 1);
  s->off[0] = 0;
  for (int64_t sl = 0; sl < s->slices; ++sl) {
    int64_t steps = 0;
    const bool ok = schedule(
        sl, [&](int64_t b, int64_t need) { s->cnt[sl * nb + b] = static_cast<uint8_t>(need), steps += need; },
        [](int64_t, int, int64_t, int64_t) {});
    if (!ok) return;
    s->off[sl + 1] = s->off[sl] + steps;
  }
  s->steps = s->off[s->slices];
  // codes: decoding costs more per step than f32 values, which cost bytes (forced: kept as codes)
  if (s->vkind >= 2 && force != 2) {
    const int native = s->vkind;
    s->vkind = 0;
    const double t_f32 = sell_time(*s, kr->cost);
    s->vkind = native;
    if (t_f32 < sell_time(*s, kr->cost)) s->vkind = 0;
  }
  if (force != 2 && !sell_pays(p, *s, kr->cost)) return;
  // pass 2: fill the steps (padding: column 0 (| 0x80 for vkind 3), value 0 / zero_code)
  const size_t vsz = s->vkind == 0 ? 4 : 1;
  s->idx = aligned_array<uint8_t>(s->steps * L + 64);
  s->values = aligned_array<uint8_t>(s->steps * L * vsz + 64);
  std::memset(s->idx.get(), s->vkind == 3 ? 0x80 : 0, s->steps * L + 64);
  std::memset(s->values.get(), s->vkind == 2 ? zero_code : 0, s->steps * L * vsz + 64);
  for (int64_t sl = 0; sl < s->slices; ++sl) {
    int64_t next = s->off[sl], base = 0;
    schedule(
        sl, [&](int64_t, int64_t need) { base = next, next += need; },
        [&](int64_t t, int l, int64_t j, int64_t incol) {
          const int64_t e = (base + t) * L + l;
          s->idx[e] = static_cast<uint8_t>(incol);
          if (s->vkind == 0) {
            const int64_t r = s->perm[sl * L + l];
            const float* trow = p.codes ? p.table.get() + (p.table_rows > 1 ? r * kCsrMaxTable : 0) : nullptr;
            const float v = p.codes ? trow[p.values[j]] : reinterpret_cast<const float*>(p.values.get())[j];
            std::memcpy(s->values.get() + 4 * e, &v, 4);
          } else {
            s->values[e] = p.values[j];
          }
        });
  }
  p.sell = std::move(s);
}

// True when v[0 .. n) holds a nan (branch-free, so the compiler vectorizes it).
bool any_nan(const float* v, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= v[i] != v[i];
  return bad != 0;
}

bool use_sell(int64_t M, const PackedCsr& W) { return W.sell && M < kernels_for(W.isa)->sell_max; }

// Floats of one zero-padded x row for the sliced-ELL path (the last window's end).
int64_t sell_xp_floats(const CsrSell& s) { return (s.nb - 1) * s.advance + s.block; }

// y = epilogue(x W^T) for small M (use_sell) through W.sell; ws holds M padded x rows.
void run_sell(int64_t M, const float* x, int64_t ldx, const PackedCsr& W, float* y, int64_t ldy,
              const Epilogue& ep, float* ws, int threads) {
  const CsrSell& S = *W.sell;
  const IsaKernels* kr = kernels_for(W.isa);
  const int L = S.lanes;
  const int64_t xpn = sell_xp_floats(S), K = W.K, N = W.N;
  // x rows copied into the (64-byte aligned) workspace, padded with zeros to the last window's
  // end: every position loads its window, and a misaligned x would make each of those loads a
  // split load (numpy rows are 16-byte aligned; measured 1024x1024 at 90%: ~1.5x slower in place)
  const float* xs = ws;
  const int64_t ldxs = xpn;
  for (int64_t m = 0; m < M; ++m) {
    std::memcpy(ws + m * xpn, x + m * ldx, sizeof(float) * K);
    std::fill(ws + m * xpn + K, ws + (m + 1) * xpn, 0.f);
  }
  const detail::SellView sv{S.nb, S.advance, S.cnt.get(), S.off.get(), S.idx.get(), S.values.get(), S.vkind,
                            S.table};
  const int64_t tstride = W.table_rows > 1 ? kCsrMaxTable : 0;
  const detail::CsrView cv{W.indptr.get(), W.indices.get(), W.values.get(), W.idx16, W.int8, W.codes,
                           W.codes ? W.table.get() : nullptr, tstride};
  const float* rs = W.row_scale ? W.row_scale.get() : nullptr;
  const double work = double(M) * double(S.steps * L + S.slices * S.nb * 8);
  int T = clamp_threads(threads);
  if (work < 65536) T = 1;
  T = static_cast<int>(std::min<int64_t>(T, std::max<int64_t>(1, S.slices / 2)));
  // one part per thread: the same split on every call keeps each part in the L2 of the core that
  // runs it (the caller starts on part 0), where 4 parts per thread moved them between cores
  const int64_t parts = T;
  constexpr int64_t kW = kCsrSellWindow;
  const int64_t chunk = kW / L;  // slices per window (= per accumulator tile)
  std::vector<int64_t> bounds = balance_rows(S.off.get(), 0, S.slices, parts);
  for (int64_t q = 1; q < parts; ++q)  // whole windows per part
    bounds[q] = std::max(bounds[q - 1], std::min(S.slices, (bounds[q] + chunk / 2) / chunk * chunk));
  const int32_t* perm = S.perm.get();
  ThreadPool::global().run(parts, T, [&](int64_t p) {
    alignas(64) float acc[4 * kW];  // up to 4 activation rows x one window of sums (lane order)
    alignas(64) float row[kW];      // one activation row's sums in row order
    for (int64_t m0 = 0; m0 < M; m0 += kr->sell_rows) {
      const int R = static_cast<int>(std::min<int64_t>(kr->sell_rows, M - m0));
      for (int64_t s0 = bounds[p]; s0 < bounds[p + 1]; s0 += chunk) {
        const int64_t s1 = std::min(bounds[p + 1], s0 + chunk);
        kr->sell(sv, s0, s1, xs + m0 * ldxs, ldxs, R, acc, kW);
        const int64_t n0 = s0 * L, n1 = std::min(N, s1 * L);  // the window's rows
        for (int r = 0; r < R; ++r) {
          const int64_t m = m0 + r;
          const float* ar = acc + r * kW;
          // lane positions below N hold the window's rows (the -1s of perm only follow them)
          for (int64_t q = n0; q < n1; ++q) row[perm[q] - n0] = ar[q - n0];
          // a nan sum may come from padding (0 * inf): recompute such rows from the CSR arrays
          if (any_nan(row, n1 - n0))
            for (int64_t n = n0; n < n1; ++n)
              if (std::isnan(row[n - n0])) kr->gemv(cv, n, n + 1, x + m * ldx, row + (n - n0));
          epilogue_row(y + m * ldy + n0, row, n1 - n0, rs ? rs + n0 : nullptr, ep, n0,
                       ep.residual ? ep.residual + m * ep.ldr + n0 : nullptr, W.isa);
        }
      }
    }
  });
}

size_t rows_workspace(int64_t M, int64_t K, Isa isa, int threads) {
  size_t f = 0;
  const IsaKernels* kr = kernels_for(isa);
  if (kr && M >= kCsrGemvMaxM) {
    const int mb = pick_mb(M, K, kr->lanes);
    f += size_t((M + mb - 1) / mb) * mb * size_t(K);
  }
  return f * sizeof(float) + 64;
}

}  // namespace

// y[j] = act(acc[j] * rs[j] * es[j] + bias[j] + res[j]) for j < cnt (pointers already offset).
void epilogue_row(float* y, const float* acc, int64_t cnt, const float* rs, const Epilogue& ep, int64_t n0,
                  const float* res, Isa isa) {
  const float* es = ep.scale ? ep.scale + n0 : nullptr;
  const float* bi = ep.bias ? ep.bias + n0 : nullptr;
  for (int64_t j = 0; j < cnt; ++j) {
    float v = acc[j];
    if (rs) v *= rs[j];
    if (es) v *= es[j];
    if (bi) v += bi[j];
    if (res) v += res[j];
    y[j] = v;
  }
  if (ep.act != Act::None) apply_act_inplace(y, cnt, ep.act, ep.alpha, isa);
}

void check_residual(int64_t M, int64_t N, const float* y, int64_t ldy, const Epilogue& ep, const char* who) {
  if (!ep.residual || M == 0 || N == 0) return;
  if (M > 1 && ep.ldr < N) fail(Code::InvalidArgument, std::string(who) + ": residual ldr < N");
  const float* r0 = ep.residual;
  const float* r1 = ep.residual + (M - 1) * ep.ldr + N;
  const float* y0 = y;
  const float* y1 = y + (M - 1) * ldy + N;
  if (r0 < y1 && y0 < r1) fail(Code::InvalidArgument, std::string(who) + ": residual overlaps the output");
}

size_t CsrSell::bytes() const {
  return size_t(slices) * (nb + sizeof(int64_t) + 4 * lanes) + size_t(steps) * lanes * (1 + (vkind == 0 ? 4 : 1));
}

size_t PackedCsr::bytes() const {
  return sizeof(int64_t) * (N + 1) + size_t(nnz) * ((idx16 ? 2 : 4) + (int8 || codes ? 1 : 4)) +
         (row_scale ? 4 * N : 0) + (codes ? sizeof(float) * kCsrMaxTable * table_rows : 0);
}

std::unique_ptr<PackedCsr> pack_csr(int64_t N, int64_t K, const void* indptr, CsrType indptr_type,
                                    const void* indices, CsrType index_type, int64_t nnz, const void* values,
                                    CsrType value_type, const float* scale, int64_t n_scale, Isa isa,
                                    const float* table, int64_t table_rows, int64_t table_size) {
  if (N < 0 || K < 0 || nnz < 0) bad("negative size");
  if (K > (int64_t{1} << 31) - 1) bad("K too large for int32 column indices");
  if (indptr_type != CsrType::I32 && indptr_type != CsrType::I64) bad("indptr must be int32 or int64");
  if (index_type != CsrType::U16 && index_type != CsrType::I32) bad("indices must be uint16 or int32");
  if (value_type != CsrType::F32 && value_type != CsrType::I8 && value_type != CsrType::U8)
    bad("values must be float32, int8 or uint8 codes");
  if (!indptr || (nnz && (!indices || !values))) bad("null array");
  if (static_cast<int>(isa) < 0 || static_cast<int>(isa) > static_cast<int>(Isa::Amx)) bad("unknown ISA");
  if (!isa_supported(isa)) fail(Code::Unsupported, std::string("csr: ISA ") + isa_name(isa) + " not supported");
  if (value_type == CsrType::I8) {
    if (!scale || (n_scale != 1 && n_scale != N)) bad("int8 values need a scale of 1 or N values");
  }
  if (value_type == CsrType::U8) {
    if (!table || table_size < 1 || table_size > kCsrMaxTable || (table_rows != 1 && table_rows != N))
      bad("uint8 codes need a table of 1 or N rows of 1.." + std::to_string(kCsrMaxTable) + " entries");
    if (scale ? (n_scale != 1 && n_scale != N) : n_scale != 0) bad("code scale must have 1 or N values");
    for (int64_t j = 0; j < nnz; ++j)
      if (static_cast<const uint8_t*>(values)[j] >= table_size)
        bad("code " + std::to_string(static_cast<const uint8_t*>(values)[j]) + " >= table size " +
            std::to_string(table_size));
  }
  auto p = std::make_unique<PackedCsr>();
  p->N = N; p->K = K; p->nnz = nnz; p->isa = isa;
  p->idx16 = K <= 65536;
  p->int8 = value_type == CsrType::I8;
  p->codes = value_type == CsrType::U8;
  p->indptr = aligned_array<int64_t>(N + 1);
  for (int64_t r = 0; r <= N; ++r) {
    const int64_t v = idx_at(indptr, indptr_type, r);
    if (r == 0 && v != 0) bad("indptr[0] must be 0");
    if (r > 0 && v < p->indptr[r - 1]) bad("indptr must be non-decreasing");
    p->indptr[r] = v;
  }
  if (p->indptr[N] != nnz) bad("indptr[N] must equal nnz");
  const size_t isz = p->idx16 ? 2 : 4, vsz = p->int8 || p->codes ? 1 : 4;
  p->indices = aligned_array<uint8_t>(nnz * isz + 64);
  p->values = aligned_array<uint8_t>(nnz * vsz + 64);
  std::memset(p->indices.get() + nnz * isz, 0, 64);
  std::memset(p->values.get() + nnz * vsz, 0, 64);
  for (int64_t j = 0; j < nnz; ++j) {
    const int64_t c = idx_at(indices, index_type, j);
    if (c < 0 || c >= K) bad("column index " + std::to_string(c) + " out of range [0, " + std::to_string(K) + ")");
    if (p->idx16) reinterpret_cast<uint16_t*>(p->indices.get())[j] = static_cast<uint16_t>(c);
    else reinterpret_cast<int32_t*>(p->indices.get())[j] = static_cast<int32_t>(c);
  }
  std::memcpy(p->values.get(), values, nnz * vsz);
  if (scale && (p->int8 || p->codes)) {
    p->row_scale = aligned_array<float>(std::max<int64_t>(N, 1));
    for (int64_t r = 0; r < N; ++r) p->row_scale[r] = scale[n_scale == 1 ? 0 : r];
  }
  if (p->codes) {
    p->table_rows = table_rows;
    p->table = aligned_array<float>(static_cast<size_t>(table_rows) * kCsrMaxTable);
    for (int64_t r = 0; r < table_rows; ++r)
      for (int64_t e = 0; e < kCsrMaxTable; ++e)
        p->table[r * kCsrMaxTable + e] = e < table_size ? table[r * table_size + e] : 0.f;
  }
  build_sell(*p);
  return p;
}

size_t csr_dense_workspace(int64_t M, const PackedCsr& W, int threads) {
  size_t b = rows_workspace(M, W.K, W.isa, threads);
  if (use_sell(M, W)) b = std::max(b, sizeof(float) * size_t(M * sell_xp_floats(*W.sell)) + 64);
  return b;
}

void csr_dense(int64_t M, const float* x, int64_t ldx, const PackedCsr& W, float* y, int64_t ldy,
               const Epilogue& ep, void* ws, int threads) {
  check_args(M, x, ldx, W, y, ldy, ep);
  if (M == 0 || W.N == 0) return;
  AlignedPtr<char> own;
  if (!ws) {
    own = aligned_array<char>(csr_dense_workspace(M, W, threads));
    ws = own.get();
  }
  if (use_sell(M, W)) run_sell(M, x, ldx, W, y, ldy, ep, static_cast<float*>(ws), threads);
  else run_rows(M, x, ldx, W, 0, W.N, y, ldy, ep, static_cast<float*>(ws), threads);
}

// ---- convolution -------------------------------------------------------------

size_t csr_conv2d_workspace(const Conv2dShape& s, const PackedCsr& W, int threads) {
  const int64_t M = s.N * s.OH() * s.OW();
  const int64_t rows = s.plain_1x1() ? M : std::min(M, kCsrConvRows);
  return conv_cols_bytes(s, kCsrConvRows) + rows_workspace(std::max<int64_t>(rows, 1), W.K, W.isa, threads);
}

void csr_conv2d(const Conv2dShape& s, const float* x, const PackedCsr& W, float* y, const Epilogue& ep,
                void* ws, int threads) {
  check_conv_shape(s, W.N, W.K, "csr_conv2d");
  if (!isa_supported(W.isa)) fail(Code::Unsupported, "csr_conv2d: the matrix was packed for an ISA this CPU lacks");
  if (s.N == 0) return;
  if (!x || !y) bad("null pointer");
  const int64_t M = s.N * s.OH() * s.OW(), Og = s.O / s.groups;
  check_residual(M, s.O, y, s.O, ep, "csr");
  AlignedPtr<char> own;
  if (!ws) {
    own = aligned_array<char>(csr_conv2d_workspace(s, W, threads));
    ws = own.get();
  }
  conv_by_row_blocks(s, x, y, ep, ws, kCsrConvRows,
                     [&](int64_t g, int64_t rows, const float* a, int64_t lda, float* yg, int64_t ldy,
                         const Epilogue& e, void* rest) {
                       run_rows(rows, a, lda, W, g * Og, (g + 1) * Og, yg, ldy, e, static_cast<float*>(rest), threads);
                     });
}

}  // namespace slimrt::kernels

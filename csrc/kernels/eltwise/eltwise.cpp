// ISA dispatch and threaded drivers for the eltwise family (see eltwise.h).
// Baseline x86-64 code: no intrinsics here, only calls into the per-ISA tables.
#include "kernels/eltwise/eltwise.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/threadpool.h"

namespace slimrt::kernels {

namespace {
// Aim for about this many elements per task so small tensors stay on one thread.
constexpr int64_t kGrainElems = 1 << 15;

int64_t rows_grain(int64_t n) { return std::max<int64_t>(1, kGrainElems / std::max<int64_t>(1, n)); }
}  // namespace

const EltwiseKernels& eltwise_kernels(Isa isa) {
  if (!isa_supported(isa))
    throw Error(Code::Unsupported, std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU");
  switch (isa) {
    case Isa::Scalar: return eltwise_kernels_scalar();
    case Isa::Avx2: return eltwise_kernels_avx2();
    default: return eltwise_kernels_avx512();  // Avx512, Avx512Vnni, Amx
  }
}

void act(const float* x, float* y, int64_t n, Act a, float alpha, Isa isa, int threads) {
  const EltwiseKernels& k = eltwise_kernels(isa);
  parallel_for(n, threads, kGrainElems / 4, [&](int64_t b, int64_t e) { k.act(x + b, y + b, e - b, a, alpha); });
}

void act_inplace(float* x, int64_t n, Act a, float alpha, Isa isa, int threads) {
  act(x, x, n, a, alpha, isa, threads);
}

void prelu(const float* x, const float* slope, int64_t slope_len, float* y, int64_t n, Isa isa, int threads) {
  const EltwiseKernels& k = eltwise_kernels(isa);
  if (slope_len <= 0 || n % slope_len != 0)
    throw Error(Code::InvalidArgument, "prelu: slope length must divide the tensor size");
  const int64_t rows = n / slope_len;
  parallel_for(rows, threads, rows_grain(slope_len), [&](int64_t b, int64_t e) {
    k.prelu(x + b * slope_len, slope, y + b * slope_len, e - b, slope_len);
  });
}

bool broadcast_shape(const int64_t* a_shape, int a_rank, const int64_t* b_shape, int b_rank, int64_t* out,
                     int* out_rank) {
  const int r = std::max(a_rank, b_rank);
  for (int d = 0; d < r; ++d) {
    const int da = d - (r - a_rank), db = d - (r - b_rank);
    const int64_t sa = da >= 0 ? a_shape[da] : 1, sb = db >= 0 ? b_shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) return false;
    out[d] = sa == 1 ? sb : sa;
  }
  *out_rank = r;
  return true;
}

void binary(BinaryOp op, const float* a, const int64_t* a_shape, int a_rank, const float* b,
            const int64_t* b_shape, int b_rank, float* y, Isa isa, int threads) {
  const EltwiseKernels& k = eltwise_kernels(isa);
  if (a_rank > kMaxRank || b_rank > kMaxRank) throw Error(Code::InvalidArgument, "binary: rank > 6");
  int64_t out[kMaxRank];
  int r = 0;
  if (!broadcast_shape(a_shape, a_rank, b_shape, b_rank, out, &r))
    throw Error(Code::InvalidArgument, "binary: shapes do not broadcast");
  // Right-aligned element strides, 0 along broadcast dims.
  int64_t sa[kMaxRank], sb[kMaxRank];
  int64_t ca = 1, cb = 1;
  for (int d = r - 1; d >= 0; --d) {
    const int da = d - (r - a_rank), db = d - (r - b_rank);
    const int64_t na = da >= 0 ? a_shape[da] : 1, nb = db >= 0 ? b_shape[db] : 1;
    sa[d] = na == 1 ? 0 : ca;
    sb[d] = nb == 1 ? 0 : cb;
    ca *= na;
    cb *= nb;
  }
  int64_t total = 1;
  for (int d = 0; d < r; ++d) total *= out[d];
  if (total == 0) return;
  // Drop size-1 dims, then merge neighbours that are contiguous for both operands.
  int64_t shp[kMaxRank], ta[kMaxRank], tb[kMaxRank];
  int m = 0;
  for (int d = 0; d < r; ++d) {
    if (out[d] == 1) continue;
    if (m > 0 && ta[m - 1] == sa[d] * out[d] && tb[m - 1] == sb[d] * out[d]) {
      shp[m - 1] *= out[d];
      ta[m - 1] = sa[d];
      tb[m - 1] = sb[d];
    } else {
      shp[m] = out[d]; ta[m] = sa[d]; tb[m] = sb[d]; ++m;
    }
  }
  if (m == 0) { shp[0] = 1; ta[0] = 0; tb[0] = 0; m = 1; }
  const int64_t n = shp[m - 1], ia = ta[m - 1], ib = tb[m - 1];
  const int64_t outer = total / n;
  if (outer == 1) {
    parallel_for(n, threads, kGrainElems, [&](int64_t s, int64_t e) {
      k.binary(op, a + s * ia, ia, b + s * ib, ib, y + s, e - s);
    });
    return;
  }
  parallel_for(outer, threads, rows_grain(n), [&](int64_t s, int64_t e) {
    // Decompose s into the outer multi-index, then step it like an odometer.
    int64_t idx[kMaxRank] = {0};
    int64_t rem = s, oa = 0, ob = 0;
    for (int d = m - 2; d >= 0; --d) {
      idx[d] = rem % shp[d];
      rem /= shp[d];
      oa += idx[d] * ta[d];
      ob += idx[d] * tb[d];
    }
    for (int64_t o = s; o < e; ++o) {
      k.binary(op, a + oa, ia, b + ob, ib, y + o * n, n);
      for (int d = m - 2; d >= 0; --d) {
        ++idx[d];
        oa += ta[d];
        ob += tb[d];
        if (idx[d] < shp[d]) break;
        oa -= ta[d] * shp[d];
        ob -= tb[d] * shp[d];
        idx[d] = 0;
      }
    }
  });
}

void softmax(const float* x, float* y, int64_t rows, int64_t n, float scale, const SoftmaxMask& mask, Isa isa,
             int threads) {
  const EltwiseKernels& k = eltwise_kernels(isa);
  if (n <= 0 || rows <= 0) return;
  if (mask.data && (mask.div <= 0 || mask.mod <= 0))
    throw Error(Code::InvalidArgument, "softmax: mask div/mod must be positive");
  parallel_for(rows, threads, rows_grain(n), [&](int64_t b, int64_t e) { k.softmax(x, y, b, e, n, scale, mask); });
}

void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t n,
                float eps, Isa isa, int threads) {
  const EltwiseKernels& k = eltwise_kernels(isa);
  if (n <= 0 || rows <= 0) return;
  parallel_for(rows, threads, rows_grain(n),
               [&](int64_t b, int64_t e) { k.layer_norm(x, gamma, beta, y, b, e, n, eps); });
}

void channel_affine(const float* x, const float* s, const float* t, float* y, int64_t rows, int64_t c, Isa isa,
                    int threads) {
  const EltwiseKernels& k = eltwise_kernels(isa);
  if (c <= 0 || rows <= 0) return;
  parallel_for(rows, threads, rows_grain(c),
               [&](int64_t b, int64_t e) { k.channel_affine(x + b * c, s, t, y + b * c, e - b, c); });
}

double sum(const float* x, int64_t n, Isa isa, int threads) {
  const EltwiseKernels& k = eltwise_kernels(isa);
  if (n <= 0) return 0.0;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, n / kGrainElems));
  std::vector<double> part(static_cast<size_t>(chunks), 0.0);
  ThreadPool::global().run(chunks, static_cast<int>(chunks), [&](int64_t c) {
    const int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    part[static_cast<size_t>(c)] = k.sum(x + b, e - b);
  });
  double total = 0.0;
  for (double v : part) total += v;
  return total;
}

// ---------------------------------------------------------------- transpose
namespace {

template <typename U>
void transpose2d_generic(const U* src, int64_t lds, U* dst, int64_t ldd, int64_t rows, int64_t cols) {
  constexpr int64_t B = 32;
  for (int64_t i0 = 0; i0 < rows; i0 += B) {
    const int64_t i1 = std::min(rows, i0 + B);
    for (int64_t j0 = 0; j0 < cols; j0 += B) {
      const int64_t j1 = std::min(cols, j0 + B);
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) dst[j * ldd + i] = src[i * lds + j];
    }
  }
}

void transpose2d_bytes(const EltwiseKernels& k, const void* src, int64_t lds, void* dst, int64_t ldd, int64_t rows,
                       int64_t cols, size_t es) {
  switch (es) {
    case 1: return transpose2d_generic(static_cast<const uint8_t*>(src), lds, static_cast<uint8_t*>(dst), ldd, rows, cols);
    case 2: return transpose2d_generic(static_cast<const uint16_t*>(src), lds, static_cast<uint16_t*>(dst), ldd, rows, cols);
    case 4: return k.transpose2d(static_cast<const float*>(src), lds, static_cast<float*>(dst), ldd, rows, cols);
    default: return transpose2d_generic(static_cast<const uint64_t*>(src), lds, static_cast<uint64_t*>(dst), ldd, rows, cols);
  }
}

}  // namespace

void transpose(const void* x, void* y, const int64_t* shape, const int* perm, int rank, size_t es, Isa isa,
               int threads) {
  const EltwiseKernels& k = eltwise_kernels(isa);
  if (rank < 0 || rank > kMaxRank) throw Error(Code::InvalidArgument, "transpose: rank must be 0..6");
  if (es != 1 && es != 2 && es != 4 && es != 8) throw Error(Code::InvalidArgument, "transpose: element size must be 1, 2, 4 or 8");
  bool seen[kMaxRank] = {false};
  int64_t total = 1;
  for (int d = 0; d < rank; ++d) {
    if (perm[d] < 0 || perm[d] >= rank || seen[perm[d]]) throw Error(Code::InvalidArgument, "transpose: bad permutation");
    seen[perm[d]] = true;
    total *= shape[d];
  }
  if (total == 0) return;
  // Keep input dims of size > 1, renumbered; then merge output neighbours that are input neighbours.
  int newid[kMaxRank];
  int64_t in_shape[kMaxRank];
  int nin = 0;
  for (int d = 0; d < rank; ++d) {
    newid[d] = shape[d] > 1 ? nin : -1;
    if (shape[d] > 1) in_shape[nin++] = shape[d];
  }
  int p[kMaxRank];
  int np = 0;
  for (int d = 0; d < rank; ++d)
    if (newid[perm[d]] >= 0) p[np++] = newid[perm[d]];
  // Merge: groups of consecutive output dims with consecutive input ids.
  int grp_first[kMaxRank], grp_len[kMaxRank], ng = 0;
  for (int d = 0; d < np; ++d) {
    if (ng > 0 && p[d] == grp_first[ng - 1] + grp_len[ng - 1]) ++grp_len[ng - 1];
    else { grp_first[ng] = p[d]; grp_len[ng] = 1; ++ng; }
  }
  // Merged input dims are the groups ordered by their first input id.
  int order[kMaxRank];
  for (int g = 0; g < ng; ++g) order[g] = g;
  for (int i = 1; i < ng; ++i)  // insertion sort by first input id (ng <= 6)
    for (int j = i; j > 0 && grp_first[order[j]] < grp_first[order[j - 1]]; --j) std::swap(order[j], order[j - 1]);
  int64_t mshape[kMaxRank], istride[kMaxRank];  // per group (output order): size and input stride
  int in_pos[kMaxRank];                          // group -> merged input position
  for (int i = 0; i < ng; ++i) in_pos[order[i]] = i;
  for (int g = 0; g < ng; ++g) {
    mshape[g] = 1;
    for (int l = 0; l < grp_len[g]; ++l) mshape[g] *= in_shape[grp_first[g] + l];
  }
  {
    int64_t s = 1;
    for (int i = ng - 1; i >= 0; --i) { istride[order[i]] = s; s *= mshape[order[i]]; }
  }
  const char* src = static_cast<const char*>(x);
  char* dst = static_cast<char*>(y);
  if (ng <= 1 || in_pos[ng - 1] == ng - 1) {
    // Innermost dim unchanged: copy contiguous runs.
    const int64_t run = ng >= 1 ? mshape[ng - 1] : 1;
    const int64_t outer = total / run;
    parallel_for(outer, threads, rows_grain(run * es / 4 + 1), [&](int64_t s, int64_t e) {
      for (int64_t o = s; o < e; ++o) {
        int64_t rem = o, off = 0;
        for (int g = ng - 2; g >= 0; --g) { off += (rem % mshape[g]) * istride[g]; rem /= mshape[g]; }
        std::memcpy(dst + o * run * es, src + off * es, run * es);
      }
    });
    return;
  }
  // 2-D blocked transpose of (output-last group A) x (input-last group B).
  const int ga = ng - 1;           // output's last dim
  int gb = 0;                      // group that is innermost in the input
  for (int g = 0; g < ng; ++g) if (in_pos[g] == ng - 1) gb = g;
  int64_t ostride[kMaxRank];
  {
    int64_t s = 1;
    for (int g = ng - 1; g >= 0; --g) { ostride[g] = s; s *= mshape[g]; }
  }
  const int64_t rows = mshape[ga], cols = mshape[gb];
  const int64_t lds = istride[ga], ldd = ostride[gb];
  const int64_t outer = total / (rows * cols);
  auto offsets = [&](int64_t o, int64_t* si, int64_t* di) {
    int64_t rem = o, so = 0, dof = 0;
    for (int g = ng - 1; g >= 0; --g) {
      if (g == ga || g == gb) continue;
      const int64_t i = rem % mshape[g];
      rem /= mshape[g];
      so += i * istride[g];
      dof += i * ostride[g];
    }
    *si = so; *di = dof;
  };
  if (outer >= 2 * std::max(1, threads) || outer * rows * cols < kGrainElems) {
    parallel_for(outer, threads, rows_grain(rows * cols), [&](int64_t s, int64_t e) {
      for (int64_t o = s; o < e; ++o) {
        int64_t so, dof;
        offsets(o, &so, &dof);
        transpose2d_bytes(k, src + so * es, lds, dst + dof * es, ldd, rows, cols, es);
      }
    });
  } else {
    // Few outer blocks: split the rows (output's last dim) across threads in multiples of 64.
    for (int64_t o = 0; o < outer; ++o) {
      int64_t so, dof;
      offsets(o, &so, &dof);
      const int64_t nchunk = (rows + 63) / 64;
      parallel_for(nchunk, threads, std::max<int64_t>(1, kGrainElems / (64 * cols) ), [&](int64_t s, int64_t e) {
        const int64_t r0 = s * 64, r1 = std::min(rows, e * 64);
        transpose2d_bytes(k, src + (so + r0 * lds) * es, lds, dst + (dof + r0) * es, ldd, r1 - r0, cols, es);
      });
    }
  }
}

// ---------------------------------------------------------------- pad
namespace {
void fill_bytes(char* p, int64_t count, const char* value, size_t es) {
  if (count <= 0) return;
  bool zero = true;
  for (size_t i = 0; i < es; ++i) zero = zero && value[i] == 0;
  if (zero) { std::memset(p, 0, count * es); return; }
  switch (es) {
    case 1: std::memset(p, value[0], count); return;
    case 2: { uint16_t v; std::memcpy(&v, value, 2); std::fill_n(reinterpret_cast<uint16_t*>(p), count, v); return; }
    case 4: { uint32_t v; std::memcpy(&v, value, 4); std::fill_n(reinterpret_cast<uint32_t*>(p), count, v); return; }
    default: { uint64_t v; std::memcpy(&v, value, 8); std::fill_n(reinterpret_cast<uint64_t*>(p), count, v); return; }
  }
}
}  // namespace

void pad(const void* x, void* y, const int64_t* shape, const int64_t* begin, const int64_t* end, int rank,
         const void* value, size_t es, int threads) {
  if (rank < 0 || rank > kMaxRank) throw Error(Code::InvalidArgument, "pad: rank must be 0..6");
  if (es != 1 && es != 2 && es != 4 && es != 8) throw Error(Code::InvalidArgument, "pad: element size must be 1, 2, 4 or 8");
  const char* src = static_cast<const char*>(x);
  char* dst = static_cast<char*>(y);
  const char* val = static_cast<const char*>(value);
  if (rank == 0) { std::memcpy(dst, src, es); return; }
  int64_t oshape[kMaxRank], istride[kMaxRank];
  int64_t total = 1;
  for (int d = 0; d < rank; ++d) {
    oshape[d] = shape[d] + begin[d] + end[d];
    if (oshape[d] < 0) throw Error(Code::InvalidArgument, "pad: negative output size");
    total *= oshape[d];
  }
  if (total == 0) return;
  {
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; --d) { istride[d] = s; s *= shape[d]; }
  }
  const int last = rank - 1;
  const int64_t on = oshape[last], in = shape[last], b = begin[last];
  // Output columns [c0, c1) come from input columns [c0 - b, c1 - b).
  const int64_t c0 = std::clamp<int64_t>(b, 0, on), c1 = std::clamp<int64_t>(b + in, 0, on);
  const int64_t orows = total / on;
  parallel_for(orows, threads, rows_grain(on * es / 4 + 1), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      char* yr = dst + r * on * es;
      int64_t rem = r, off = 0;
      bool inside = true;
      for (int d = last - 1; d >= 0; --d) {
        const int64_t i = rem % oshape[d] - begin[d];
        rem /= oshape[d];
        if (i < 0 || i >= shape[d]) { inside = false; break; }
        off += i * istride[d];
      }
      if (!inside || c1 <= c0) { fill_bytes(yr, on, val, es); continue; }
      fill_bytes(yr, c0, val, es);
      std::memcpy(yr + c0 * es, src + (off + c0 - b) * es, (c1 - c0) * es);
      fill_bytes(yr + c1 * es, on - c1, val, es);
    }
  });
}

}  // namespace slimrt::kernels

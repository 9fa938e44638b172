// The int8 GEMM microkernel body (direct and indirect A), written once for every ISA: AVX2 and
// AVX-512 with vpmaddwd over K pairs (c2), AVX-512 VNNI with vpdpbusd over K quads (c4).
// Included by qgemm_<isa>.cpp inside its ISA namespace (no include guard; everything lands in an
// anonymous namespace there, so each ISA compiles its own copy with its own -m flags). The including
// file includes <immintrin.h> and <cstring> first.
//
// Tile: R rows x NV vectors of V::W int32 columns (NR = NV * W). Per K group (4 bytes of each A
// row: two int16 for c2, four u8 for c4) one 32-bit broadcast per row of A and NV B vectors, each
// read from V::kBBytes bytes of the panel [groups][NR][kg] (qgemm_internal.h); dot() adds the
// group's products into the int32 accumulators exactly. Tiles of at most V::kSplit accumulators
// (GEMV rows) use two accumulator sets over even/odd groups to hide the add latency.
//
// A policy V provides (static inline):
//   types   I (W int32), A (the element type of the A rows: int16_t for c2, uint8_t for c4)
//   consts  W (int32 lanes), kAStep (A elements per K group: 2 or 4), kBBytes (panel bytes per B
//           vector and group), kSplit (see above)
//   ops     zero(), bcast(int32) (to all lanes), load_b(p) (one B vector from kBBytes bytes at p),
//           dot(c, a, b) (c + the group's products of a and b per lane), add(a, b), store(p, x)
namespace {

inline int32_t load32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <class V, int NV, int R>
constexpr int q8_sets() { return R * NV <= V::kSplit ? 2 : 1; }

// c[s][r][j] += the products of K groups [0, kg): row r's 4 bytes at row(r) + kAStep * g (A elements),
// B at b + g * NV * kBBytes.
template <class V, int NV, int R, int S, class Row>
__attribute__((always_inline)) inline void q8_kloop(int64_t kg, const Row& row, const int8_t* b,
                                                    typename V::I (&c)[S][R][NV]) {
  constexpr int64_t GB = NV * V::kBBytes;  // panel bytes per K group
  int64_t g = 0;
  for (; g + S <= kg; g += S) {
#pragma GCC unroll 2
    for (int s = 0; s < S; ++s) {
      const int8_t* bp = b + (g + s) * GB;
      typename V::I bv[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) bv[j] = V::load_b(bp + V::kBBytes * j);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const auto av = V::bcast(load32(row(r) + V::kAStep * (g + s)));
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) c[s][r][j] = V::dot(c[s][r][j], av, bv[j]);
      }
    }
  }
  for (; g < kg; ++g) {
    const int8_t* bp = b + g * GB;
    typename V::I bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = V::load_b(bp + V::kBBytes * j);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const auto av = V::bcast(load32(row(r) + V::kAStep * g));
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) c[0][r][j] = V::dot(c[0][r][j], av, bv[j]);
    }
  }
}

template <class V, int NV, int R, int S>
__attribute__((always_inline)) inline void q8_zero(typename V::I (&c)[S][R][NV]) {
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) c[s][r][j] = V::zero();
}

// acc[r * NR + column] = the sum of the accumulator sets.
template <class V, int NV, int R, int S>
__attribute__((always_inline)) inline void q8_store(typename V::I (&c)[S][R][NV], int32_t* acc) {
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      auto v = c[0][r][j];
      if (S == 2) v = V::add(v, c[S - 1][r][j]);
      V::store(acc + r * (NV * V::W) + j * V::W, v);
    }
}

// Direct A: row r at a + r * lda (elements).
template <class V, int NV, int R>
void q8_kernel(int64_t kg, const typename V::A* a, int64_t lda, const int8_t* b, int32_t* acc) {
  constexpr int S = q8_sets<V, NV, R>();
  typename V::I c[S][R][NV];
  q8_zero<V, NV, R, S>(c);
  q8_kloop<V, NV, R, S>(kg, [&](int r) { return a + r * lda; }, b, c);
  q8_store<V, NV, R, S>(c, acc);
}

// Indirect (implicit im2col) form: the K stream of row r is taps segments of kgt groups, segment t
// read from ap[r * taps + t] (an input pixel's channels, or a zero-point row for padding); B is
// the same packed panel as for the direct form (K = taps * 4 * kgt).
template <class V, int NV, int R>
void q8_kernel_ind(int64_t taps, int64_t kgt, const uint8_t* const* ap, const int8_t* b, int32_t* acc) {
  constexpr int S = q8_sets<V, NV, R>();
  typename V::I c[S][R][NV];
  q8_zero<V, NV, R, S>(c);
  for (int64_t t = 0; t < taps; ++t) {
    const uint8_t* a[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) a[r] = ap[r * taps + t];
    q8_kloop<V, NV, R, S>(kgt, [&](int r) { return a[r]; }, b + t * kgt * (NV * V::kBBytes), c);
  }
  q8_store<V, NV, R, S>(c, acc);
}

// rows in [1, MR]: one instantiation per row count.
template <class V, int NV, int MR, int R = MR>
void q8_dispatch(int64_t kgroups, const void* a, int64_t lda, int rows, const int8_t* b, int32_t* acc) {
  if constexpr (R > 1) {
    if (rows < R) return q8_dispatch<V, NV, MR, R - 1>(kgroups, a, lda, rows, b, acc);
  }
  q8_kernel<V, NV, R>(kgroups, static_cast<const typename V::A*>(a), lda, b, acc);
}

template <class V, int NV, int MR, int R = MR>
void q8_dispatch_ind(int64_t taps, int64_t kgt, const uint8_t* const* ap, int rows, const int8_t* b, int32_t* acc) {
  if constexpr (R > 1) {
    if (rows < R) return q8_dispatch_ind<V, NV, MR, R - 1>(taps, kgt, ap, rows, b, acc);
  }
  q8_kernel_ind<V, NV, R>(taps, kgt, ap, b, acc);
}

}  // namespace

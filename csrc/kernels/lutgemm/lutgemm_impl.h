// The LUT-GEMM row kernel, written once for every vector width (layout: lutgemm.h, W-dword blocks).
// Included by lutgemm_<isa>.cpp inside its ISA namespace after that file's policy struct V (no
// include guard; everything but the exported lut_rows lands in an anonymous namespace, so each ISA
// compiles its own copy with its own -m flags).
//
// V must provide (static inline):
//   types   Vec (W floats), Bits (W dwords of packed indices), Table (a 16-entry table in registers)
//   consts  W (lanes = dwords per block), kRows (weight rows per call), kXRegs (see rows_kernel)
//   ops     zero(), load(p) (unaligned), fma(a, b, c) = a*b + c, hsum(x), load_bits(p) (4W bytes),
//           srli<SB>(bits) (each dword >> SB), table(tp) (entries 0..15 at tp), no_table(),
//           decode<SB>(bits, table, tp) (the low SB bits of each dword -> its table entry; SB = 8
//           may read the 256 entries at tp)
namespace {

// R weight rows x P activation rows over the whole (padded) K. Per weight row and block: one load
// of W dwords; per chunk a shift by SB exposes the next W indices; each decoded W-weight vector
// feeds P FMAs, each x vector R FMAs (kXRegs: x loaded once per chunk into P registers; otherwise
// each FMA reads its x vector from memory, which leaves the registers to the tables and sums).
template <int SB, int R, int P>
void rows_kernel(const LutView& w, int64_t n, const float* xs, int64_t ldx, float* out, int64_t ldo) {
  constexpr int S = 32 / SB;
  constexpr int W = V::W;
  const int64_t nb = w.row_bytes / (4 * W);
  const uint8_t* p[R];
  const float* tp[R];
  typename V::Table table[R];
  typename V::Vec acc[R][P];
  for (int r = 0; r < R; ++r) {
    p[r] = w.idx + (n + r) * w.row_bytes;
    tp[r] = w.lut + (w.per_row ? (n + r) * w.table : 0);
    table[r] = SB <= 4 ? V::table(tp[r]) : V::no_table();
    for (int q = 0; q < P; ++q) acc[r][q] = V::zero();
  }
  for (int64_t b = 0; b < nb; ++b) {
    typename V::Bits d[R];
    for (int r = 0; r < R; ++r) d[r] = V::load_bits(p[r] + b * 4 * W);
    const float* xb = xs + b * (W * S);
#pragma GCC unroll 32
    for (int j = 0; j < S; ++j) {
      typename V::Vec xv[P];
      if constexpr (V::kXRegs)
        for (int q = 0; q < P; ++q) xv[q] = V::load(xb + q * ldx + W * j);
      for (int r = 0; r < R; ++r) {
        const auto wv = V::template decode<SB>(d[r], table[r], tp[r]);
        for (int q = 0; q < P; ++q)
          acc[r][q] = V::fma(wv, V::kXRegs ? xv[q] : V::load(xb + q * ldx + W * j), acc[r][q]);
        d[r] = V::template srli<SB>(d[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < P; ++q) out[q * ldo + r] = V::hsum(acc[r][q]);
}

template <int SB, int P>
void rows_sb(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, float* out, int64_t ldo) {
  for (int64_t n = n0; n < n1; n += V::kRows) rows_kernel<SB, V::kRows, P>(w, n, xs, ldx, out + (n - n0), ldo);
}

template <int SB>
void rows_p(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, int p, float* out,
            int64_t ldo) {
  switch (p) {
    case 1: rows_sb<SB, 1>(w, n0, n1, xs, ldx, out, ldo); break;
    case 2: rows_sb<SB, 2>(w, n0, n1, xs, ldx, out, ldo); break;
    case 3: rows_sb<SB, 3>(w, n0, n1, xs, ldx, out, ldo); break;
    default: rows_sb<SB, 4>(w, n0, n1, xs, ldx, out, ldo); break;
  }
}

}  // namespace

void lut_rows(const LutView& w, int64_t n0, int64_t n1, const float* xs, int64_t ldx, int p, float* out,
              int64_t ldo) {
  switch (w.sb) {
    case 1: rows_p<1>(w, n0, n1, xs, ldx, p, out, ldo); break;
    case 2: rows_p<2>(w, n0, n1, xs, ldx, p, out, ldo); break;
    case 4: rows_p<4>(w, n0, n1, xs, ldx, p, out, ldo); break;
    default: rows_p<8>(w, n0, n1, xs, ldx, p, out, ldo); break;
  }
}

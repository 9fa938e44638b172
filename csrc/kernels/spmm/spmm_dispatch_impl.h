// The per-ISA entry points of the CSR kernels: included at the end of spmm_impl.h
// (so once per spmm_<isa>.cpp, inside its ISA namespace), after its ValueKind,
// gemv_rows<I16, VK> and tile_rows<VK, NV, U> (no include guard on purpose).

namespace {
template <int VK>
void tile_dispatch(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc) {
  switch (mb / kCsrLanes) {  // NV vectors per xt row; U independent accumulator sets
    case 1: tile_rows<VK, 1, 4>(w, n0, n1, xt, acc); break;
    case 2: tile_rows<VK, 2, 4>(w, n0, n1, xt, acc); break;
    case 3: tile_rows<VK, 3, 2>(w, n0, n1, xt, acc); break;
    default: tile_rows<VK, 4, 2>(w, n0, n1, xt, acc); break;
  }
}

template <bool I16>
void gemv_dispatch(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc) {
  if (w.codes) gemv_rows<I16, kCodes>(w, n0, n1, x, acc);
  else if (w.int8) gemv_rows<I16, kI8>(w, n0, n1, x, acc);
  else gemv_rows<I16, kF32>(w, n0, n1, x, acc);
}
}  // namespace

void csr_gemv(const CsrView& w, int64_t n0, int64_t n1, const float* x, float* acc) {
  if (w.idx16) gemv_dispatch<true>(w, n0, n1, x, acc);
  else gemv_dispatch<false>(w, n0, n1, x, acc);
}

void csr_tile(const CsrView& w, int64_t n0, int64_t n1, const float* xt, int mb, float* acc) {
  if (w.codes) tile_dispatch<kCodes>(w, n0, n1, xt, mb, acc);
  else if (w.int8) tile_dispatch<kI8>(w, n0, n1, xt, mb, acc);
  else tile_dispatch<kF32>(w, n0, n1, xt, mb, acc);
}

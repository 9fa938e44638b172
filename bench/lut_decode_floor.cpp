// The vector-pipe floor of the 4-bit codebook GEMV (lutq8_vnni_impl.h, vpermb decode): the
// instructions it issues per 128 weights (2 vpermb decodes, 2 vpdpbusd, 1 vpsrlw for the high
// nibbles), written in asm on independent registers (no loads, no moves; each register its own
// chain); prints ns per 64 weights, to set
// against the kernels' own time per 64 weights (bench_lutgemm.py, batch 1, 1 thread: time per call
// / (K*N/64)). AVX-512 VBMI + VNNI CPUs only.
//   g++ -O2 -mavx512f -o /tmp/lut_floor bench/lut_decode_floor.cpp && /tmp/lut_floor
#include <chrono>
#include <cstdio>

template <class Body>
static double best_ns(Body body, long iters) {
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    body(iters);
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    best = ns < best ? ns : best;
  }
  return best / iters;
}

// zmm0: the table / activations (read only); zmm1-10 vpermb chains, zmm11-20 vpdpbusd chains,
// zmm21-25 vpsrlw chains (10 chains per kind cover the latencies): one iteration = 640 weights.
static void mix(long n) {
  asm volatile(
      "vpternlogd $0xff, %%zmm0, %%zmm0, %%zmm0\n"
      "1:\n"
      "vpermb %%zmm0, %%zmm1, %%zmm1\n vpdpbusd %%zmm0, %%zmm0, %%zmm11\n"
      "vpermb %%zmm0, %%zmm2, %%zmm2\n vpdpbusd %%zmm0, %%zmm0, %%zmm12\n vpsrlw $4, %%zmm21, %%zmm21\n"
      "vpermb %%zmm0, %%zmm3, %%zmm3\n vpdpbusd %%zmm0, %%zmm0, %%zmm13\n"
      "vpermb %%zmm0, %%zmm4, %%zmm4\n vpdpbusd %%zmm0, %%zmm0, %%zmm14\n vpsrlw $4, %%zmm22, %%zmm22\n"
      "vpermb %%zmm0, %%zmm5, %%zmm5\n vpdpbusd %%zmm0, %%zmm0, %%zmm15\n"
      "vpermb %%zmm0, %%zmm6, %%zmm6\n vpdpbusd %%zmm0, %%zmm0, %%zmm16\n vpsrlw $4, %%zmm23, %%zmm23\n"
      "vpermb %%zmm0, %%zmm7, %%zmm7\n vpdpbusd %%zmm0, %%zmm0, %%zmm17\n"
      "vpermb %%zmm0, %%zmm8, %%zmm8\n vpdpbusd %%zmm0, %%zmm0, %%zmm18\n vpsrlw $4, %%zmm24, %%zmm24\n"
      "vpermb %%zmm0, %%zmm9, %%zmm9\n vpdpbusd %%zmm0, %%zmm0, %%zmm19\n"
      "vpermb %%zmm0, %%zmm10, %%zmm10\n vpdpbusd %%zmm0, %%zmm0, %%zmm20\n vpsrlw $4, %%zmm25, %%zmm25\n"
      "dec %0\n jnz 1b\n"
      "vzeroupper\n"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "cc");
}

// the int8 GEMV's arithmetic alone: 10 vpdpbusd chains (640 weights)
static void dot(long n) {
  asm volatile(
      "vpternlogd $0xff, %%zmm0, %%zmm0, %%zmm0\n"
      "1:\n"
      "vpdpbusd %%zmm0, %%zmm0, %%zmm11\n vpdpbusd %%zmm0, %%zmm0, %%zmm12\n vpdpbusd %%zmm0, %%zmm0, %%zmm13\n"
      "vpdpbusd %%zmm0, %%zmm0, %%zmm14\n vpdpbusd %%zmm0, %%zmm0, %%zmm15\n vpdpbusd %%zmm0, %%zmm0, %%zmm16\n"
      "vpdpbusd %%zmm0, %%zmm0, %%zmm17\n vpdpbusd %%zmm0, %%zmm0, %%zmm18\n vpdpbusd %%zmm0, %%zmm0, %%zmm19\n"
      "vpdpbusd %%zmm0, %%zmm0, %%zmm20\n"
      "dec %0\n jnz 1b\n"
      "vzeroupper\n"
      : "+r"(n)
      :
      : "xmm0", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "cc");
}

int main() {
  const long iters = 20000000;
  std::printf("codebook decode + dot (vpermb + vpdpbusd + 1/2 vpsrlw): %.3f ns per 64 weights\n",
              best_ns(mix, iters) / 10);
  std::printf("int8 dot alone (vpdpbusd):                               %.3f ns per 64 weights\n",
              best_ns(dot, iters) / 10);
  return 0;
}

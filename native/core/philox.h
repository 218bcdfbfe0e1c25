// Philox4x32-10 counter-based generator, usable from host and device code, so that
// the CPU and CUDA backends draw the same random numbers for the same seed and offset.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define R1V_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define R1V_HOST_DEVICE inline
#endif

namespace r1v {

struct Philox4 {
  uint32_t v[4];
};

R1V_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

// counter = (index, offset) and key = seed; returns four independent 32-bit words.
R1V_HOST_DEVICE Philox4 philox4x32_10(uint64_t index, uint64_t offset, uint64_t seed) {
  uint32_t c0 = static_cast<uint32_t>(index), c1 = static_cast<uint32_t>(index >> 32);
  uint32_t c2 = static_cast<uint32_t>(offset), c3 = static_cast<uint32_t>(offset >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, &hi0, &lo0);
    philox_mulhilo(0xCD9E8D57u, c2, &hi1, &lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in (0, 1]: never 0, so log() in Box-Muller stays finite.
R1V_HOST_DEVICE float philox_uniform(uint32_t bits) {
  return (static_cast<float>(bits >> 8) + 1.0f) * (1.0f / 16777216.0f);
}

}  // namespace r1v

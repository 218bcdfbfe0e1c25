// Vectorised f32 row helpers shared by the CPU kernels (softmax-like passes over rows of
// attention scores and logits). Each picks AVX-512, AVX2+FMA or portable code at run
// time from cpu_info().isa, like the GEMM. exp is a degree-6 polynomial after range
// reduction (≤ 2 ulp over the normal range); results below e^-87.3 flush to 0, NaN stays NaN.
#pragma once
#include <cstdint>

// Marks a plain loop function to be compiled for AVX-512, AVX2 and baseline x86-64, with the
// variant picked by the loader from the CPU's features (GCC target_clones). Unlike the
// hand-vectorised paths above it does not follow R1V_CPU_ISA: the variants come from one
// source, so there is no per-ISA code of ours to test separately.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define R1V_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define R1V_VECTOR_CLONES
#endif

namespace r1v::cpu {

// max_i x[i] (−inf for n = 0; NaN if any x[i] is NaN).
float row_max(const float* x, int64_t n);

// y[i] = exp(scale·x[i] − shift); returns Σ_i y[i] (accumulated in f32 lanes, then f64).
// y may alias x.
float exp_shifted_sum(const float* x, float* y, int64_t n, float scale, float shift);

// Σ_i a[i]·b[i].
float dot(const float* a, const float* b, int64_t n);

// y[i] = y[i]·beta + alpha·x[i]; beta = 0 overwrites y (whatever it held).
void scale_add(float* y, float beta, const float* x, float alpha, int64_t n);

// exp(x) with the same polynomial as the vector paths (for scalar tails and tests).
float exp_approx(float x);

}  // namespace r1v::cpu

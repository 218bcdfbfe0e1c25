// CUDA rope: one block per token (grid-stride). The block first forms the token's D/2 angles in f64,
// reduces them modulo 2π and stores cos/sin (f32) in shared memory; then its threads rotate
// every (head, i) pair of the token with them.
#include <cmath>

#include "../rope.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int64_t kMaxBlocks = 65535;  // the grid-stride loop over tokens covers the rest

template <typename T>
__global__ void __launch_bounds__(kThreads)
    rope_kernel(const T* __restrict__ x, const int32_t* __restrict__ positions, T* __restrict__ y, int64_t tokens,
                int64_t heads, int64_t dim, double log_theta, float sin_sign) {
  extern __shared__ float cos_sin[];  // cos [D/2] then sin [D/2]
  const int64_t half = dim / 2;
  const double two_pi = 6.283185307179586476925286766559;
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const double position = positions[t];
    for (int64_t i = threadIdx.x; i < half; i += kThreads) {
      const double angle = position * exp(-2.0 * static_cast<double>(i) / static_cast<double>(dim) * log_theta);
      const float reduced = static_cast<float>(angle - two_pi * rint(angle / two_pi));
      float s, c;
      sincosf(reduced, &s, &c);
      cos_sin[i] = c;
      cos_sin[half + i] = sin_sign * s;
    }
    __syncthreads();
    const int64_t base = t * heads * dim;
    for (int64_t k = threadIdx.x; k < heads * half; k += kThreads) {
      const int64_t h = k / half, i = k - h * half, at = base + h * dim + i;
      const float x1 = to_float(x[at]), x2 = to_float(x[at + half]);
      const float c = cos_sin[i], s = cos_sin[half + i];
      y[at] = from_float<T>(x1 * c - x2 * s);
      y[at + half] = from_float<T>(x2 * c + x1 * s);
    }
    __syncthreads();  // the next token overwrites cos_sin
  }
}

template <typename T>
void launch(const RopeShape& s, const void* x, const int32_t* positions, void* y, cudaStream_t stream) {
  const size_t shared = sizeof(float) * static_cast<size_t>(s.dim);
  const unsigned blocks = static_cast<unsigned>(s.tokens < kMaxBlocks ? s.tokens : kMaxBlocks);
  rope_kernel<T><<<blocks, kThreads, shared, stream>>>(static_cast<const T*>(x), positions, static_cast<T*>(y),
                                                       s.tokens, s.heads, s.dim, std::log(s.theta), s.sin_sign);
  check_launch("rope");
}

}  // namespace

void rope(const RopeShape& s, const void* x, const int32_t* positions, void* y, void* stream) {
  if (s.tokens == 0 || s.heads == 0 || s.dim == 0) return;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  switch (s.dtype) {
    case DType::F32:
      return launch<float>(s, x, positions, y, st);
    case DType::BF16:
      return launch<__nv_bfloat16>(s, x, positions, y, st);
    case DType::F16:
      return launch<__half>(s, x, positions, y, st);
    default:
      fail(ErrorCode::DType, "rope: unsupported dtype ", dtype_name(s.dtype));
  }
}

}  // namespace r1v::cuda

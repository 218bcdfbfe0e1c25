// CUDA gelu: grid-stride elementwise kernels, f32 math.
#include "../gelu.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;
constexpr float kSqrtHalf = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;

// Φ(z) as ½·erfc(−z/√2): accurate in the negative tail, where 1 + erf cancels.
__device__ __forceinline__ float normal_cdf(float z) { return 0.5f * erfcf(-z * kSqrtHalf); }

template <typename T>
__global__ void __launch_bounds__(kThreads) gelu_kernel(int64_t n, const T* __restrict__ z, T* __restrict__ y) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) {
    const float x = to_float(z[i]);
    y[i] = from_float<T>(x * normal_cdf(x));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gelu_backward_kernel(int64_t n, const T* __restrict__ z, const T* __restrict__ dy, T* __restrict__ dz) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) {
    const float x = to_float(z[i]);
    dz[i] = from_float<T>(to_float(dy[i]) * (normal_cdf(x) + x * kInvSqrt2Pi * expf(-0.5f * x * x)));
  }
}

}  // namespace

void gelu(DType dtype, int64_t n, const void* z, void* y, void* stream) {
  dispatch_float_dtype(dtype, "gelu", [&](auto tag) {
    using T = decltype(tag);
    gelu_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        n, static_cast<const T*>(z), static_cast<T*>(y));
    check_launch("gelu");
  });
}

void gelu_backward(DType dtype, int64_t n, const void* z, const void* dy, void* dz, void* stream) {
  dispatch_float_dtype(dtype, "geluBackward", [&](auto tag) {
    using T = decltype(tag);
    gelu_backward_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        n, static_cast<const T*>(z), static_cast<const T*>(dy), static_cast<T*>(dz));
    check_launch("geluBackward");
  });
}

}  // namespace r1v::cuda

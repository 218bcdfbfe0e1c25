// CUDA swiglu: grid-stride elementwise kernels, f32 math.
#include "../swiglu.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;
__device__ __forceinline__ float sigmoid(float g) { return 1.f / (1.f + expf(-g)); }

template <typename T>
__global__ void __launch_bounds__(kThreads)
    swiglu_kernel(int64_t n, const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ y) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) {
    const float g = to_float(gate[i]);
    y[i] = from_float<T>(g * sigmoid(g) * to_float(up[i]));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    swiglu_backward_kernel(int64_t n, const T* __restrict__ gate, const T* __restrict__ up, const T* __restrict__ dy,
                           T* __restrict__ d_gate, T* __restrict__ d_up) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) {
    const float g = to_float(gate[i]), u = to_float(up[i]), d = to_float(dy[i]);
    const float s = sigmoid(g);
    d_up[i] = from_float<T>(d * g * s);
    d_gate[i] = from_float<T>(d * u * s * (1.f + g * (1.f - s)));
  }
}

}  // namespace

void swiglu(DType dtype, int64_t n, const void* gate, const void* up, void* y, void* stream) {
  if (n == 0) return;
  dispatch_float_dtype(dtype, "swiglu", [&](auto tag) {
    using T = decltype(tag);
    swiglu_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        n, static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(y));
    check_launch("swiglu");
  });
}

void swiglu_backward(DType dtype, int64_t n, const void* gate, const void* up, const void* dy, void* d_gate, void* d_up,
                     void* stream) {
  if (n == 0) return;
  dispatch_float_dtype(dtype, "swiglu", [&](auto tag) {
    using T = decltype(tag);
    swiglu_backward_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        n, static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<const T*>(dy), static_cast<T*>(d_gate),
        static_cast<T*>(d_up));
    check_launch("swigluBackward");
  });
}

}  // namespace r1v::cuda

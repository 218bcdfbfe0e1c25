// CUDA cast: one grid-stride pass, each element through f32 (round to nearest even on store);
// same-dtype copies are one cudaMemcpyAsync.
#include "../cast.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;

template <typename From, typename To>
__global__ void __launch_bounds__(kThreads) cast_kernel(const From* __restrict__ x, int64_t n, To* __restrict__ out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step)
    out[i] = from_float<To>(to_float(x[i]));
}

}  // namespace

void cast(DType from, const void* x, int64_t n, DType to, void* out, void* stream) {
  if (n == 0) return;
  dispatch_float_dtype(from, "cast", [&](auto from_tag) {
    using From = decltype(from_tag);
    dispatch_float_dtype(to, "cast", [&](auto to_tag) {
      using To = decltype(to_tag);
      cast_kernel<From, To><<<grid_stride_blocks(n, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
          static_cast<const From*>(x), n, static_cast<To*>(out));
      check_launch("cast");
    });
  });
}

void copy_bytes(const char* op, void* dst, const void* src, size_t bytes, void* stream) {
  cudaError_t err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream));
  if (err != cudaSuccess) fail(ErrorCode::Cuda, op, ": device copy failed: ", cudaGetErrorString(err));
}

}  // namespace r1v::cuda

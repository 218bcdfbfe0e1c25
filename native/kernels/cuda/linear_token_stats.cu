// CUDA pieces of linearTokenStats besides the shared tokenStats kernels and run_gemm: the
// f32 sum of 16-bit dHidden chunk products, and its final rounding to the input dtype.
#include <cuda_runtime.h>

#include <cstdint>

#include "../linear_token_stats.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;
template <typename T>
__global__ void accumulate_kernel(float* __restrict__ acc, const T* __restrict__ src, int64_t count, bool first) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += step) {
    const float v = to_float(src[i]);
    acc[i] = first ? v : acc[i] + v;
  }
}

template <typename T>
__global__ void store_kernel(T* __restrict__ dst, const float* __restrict__ src, int64_t count) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += step) {
    dst[i] = from_float<T>(src[i]);
  }
}

}  // namespace

void accumulate_f32(float* acc, const void* src, DType dtype, int64_t count, bool first, void* stream) {
  if (count == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::BF16) {
    accumulate_kernel<<<grid_stride_blocks(count, kThreads), kThreads, 0, s>>>(
        acc, static_cast<const __nv_bfloat16*>(src), count, first);
  } else if (dtype == DType::F16) {
    accumulate_kernel<<<grid_stride_blocks(count, kThreads), kThreads, 0, s>>>(acc, static_cast<const __half*>(src),
                                                                               count, first);
  } else {
    fail(ErrorCode::DType, "linearTokenStatsBackward: f32 accumulation of ", dtype_name(dtype), " is not needed");
  }
  check_launch("linear_token_stats_accumulate");
}

void store_f32_as(void* dst, DType dtype, const float* src, int64_t count, void* stream) {
  if (count == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::BF16) {
    store_kernel<<<grid_stride_blocks(count, kThreads), kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(dst), src, count);
  } else if (dtype == DType::F16) {
    store_kernel<<<grid_stride_blocks(count, kThreads), kThreads, 0, s>>>(static_cast<__half*>(dst), src, count);
  } else {
    fail(ErrorCode::DType, "linearTokenStatsBackward: rounding f32 to ", dtype_name(dtype), " is not needed");
  }
  check_launch("linear_token_stats_store");
}

}  // namespace r1v::cuda

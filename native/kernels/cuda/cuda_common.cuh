// Small device helpers shared by the CUDA kernels: typed loads/stores that convert to and
// from f32 (every kernel accumulates in f32), warp/block reductions, and the launch check.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../../core/dtype.h"
#include "../../core/error.h"

namespace r1v::cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory; the call synchronises the block.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

// Calls fn(T{}) with T the element type of a float dtype (float, __nv_bfloat16, __half);
// any other dtype throws Error(DType) naming the op.
template <typename Fn>
void dispatch_float_dtype(r1v::DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case r1v::DType::F32:
      return fn(float{});
    case r1v::DType::BF16:
      return fn(__nv_bfloat16{});
    case r1v::DType::F16:
      return fn(__half{});
    default:
      fail(ErrorCode::DType, op, ": unsupported dtype ", r1v::dtype_name(dtype));
  }
}

// dst[col] = Σ_blk partials[blk·cols + col], blocks added in order: the second stage of the
// deterministic (atomic-free) column sums of the connector and norm backwards.
template <typename T>
__global__ void sum_partials_in_order_kernel(const float* __restrict__ partials, int64_t blocks, int64_t cols,
                                             T* __restrict__ dst) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  float total = 0.f;
  for (int64_t blk = 0; blk < blocks; ++blk) total += partials[blk * cols + col];
  dst[col] = from_float<T>(total);
}

// Blocks for a grid-stride loop over `items` with `items_per_block` handled per block pass:
// ⌈items / items_per_block⌉, at least 1 and at most 65535 (the loop covers the rest).
inline unsigned grid_stride_blocks(int64_t items, int64_t items_per_block) {
  constexpr int64_t kMaxBlocks = 65535;
  const int64_t blocks = (items + items_per_block - 1) / items_per_block;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// Throws Error(Cuda) naming the kernel when its launch failed.
inline void check_launch(const char* kernel) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail(ErrorCode::Cuda, kernel, " kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace r1v::cuda

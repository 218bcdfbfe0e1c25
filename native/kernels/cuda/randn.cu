// CUDA randn: Philox4x32-10 + Box-Muller, the same algorithm as kernels/cpu/randn.cpp.
// One thread per counter block: element i uses block i/4; lanes 0,1 come from words
// (0,1), lanes 2,3 from words (2,3), cos then sin. Full-precision logf/sinf/cosf (no
// intrinsics), so results match the CPU to within a few ulp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../../core/dtype.h"
#include "../../core/error.h"
#include "../../core/philox.h"
#include "../randn.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

__device__ __forceinline__ void store_value(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_value(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store_value(__half* p, float v) { *p = __float2half_rn(v); }

template <typename T>
__global__ void randn_kernel(T* __restrict__ data, int64_t count, uint64_t seed, uint64_t offset) {
  const int64_t blocks = (count + 3) / 4;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t block = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; block < blocks; block += step) {
    const Philox4 r = philox4x32_10(static_cast<uint64_t>(block), offset, seed);
    const int64_t first = block * 4;
#pragma unroll
    for (int pair = 0; pair < 2; ++pair) {
      const float u1 = philox_uniform(r.v[2 * pair]);
      const float u2 = philox_uniform(r.v[2 * pair + 1]);
      const float radius = sqrtf(-2.0f * logf(u1));
      const float angle = 6.2831853071795864769f * u2;
      const int64_t i = first + 2 * pair;
      if (i < count) store_value(data + i, radius * cosf(angle));
      if (i + 1 < count) store_value(data + i + 1, radius * sinf(angle));
    }
  }
}

template <typename T>
void launch_randn(void* data, int64_t count, uint64_t seed, uint64_t offset, cudaStream_t stream) {
  constexpr int kThreads = 256;
  // Each thread draws four numbers per Philox call.
  randn_kernel<T><<<grid_stride_blocks((count + 3) / 4, kThreads), kThreads, 0, stream>>>(static_cast<T*>(data), count,
                                                                                          seed, offset);
}

}  // namespace

void randn(void* data, DType dtype, int64_t count, uint64_t seed, uint64_t offset, void* stream) {
  if (count <= 0) return;
  R1V_CHECK(data != nullptr, Argument, "randn: null data pointer");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::F32:
      launch_randn<float>(data, count, seed, offset, s);
      break;
    case DType::BF16:
      launch_randn<__nv_bfloat16>(data, count, seed, offset, s);
      break;
    case DType::F16:
      launch_randn<__half>(data, count, seed, offset, s);
      break;
    default:
      fail(ErrorCode::DType, "randn: dtype must be floating, got ", dtype_name(dtype));
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail(ErrorCode::Cuda, "randn kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace r1v::cuda

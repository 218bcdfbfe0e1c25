// CUDA fill: a grid-stride kernel writing one bit pattern. The value is converted to
// the element type on the host, with the same routines as the CPU fill, so both
// backends store identical bits.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "../../core/dtype.h"
#include "../../core/error.h"
#include "../fill.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

template <typename Word>
__global__ void fill_kernel(Word* __restrict__ data, int64_t count, Word value) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += step) {
    data[i] = value;
  }
}

// (int32_t)value, but saturating and NaN → 0, since an out-of-range cast is undefined.
int32_t to_i32(double value) {
  if (std::isnan(value)) return 0;
  if (value >= 2147483647.0) return std::numeric_limits<int32_t>::max();
  if (value <= -2147483648.0) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(value);
}

template <typename Word>
void launch_fill(void* data, int64_t count, Word value, cudaStream_t stream) {
  constexpr int kThreads = 256;
  fill_kernel<Word>
      <<<grid_stride_blocks(count, kThreads), kThreads, 0, stream>>>(static_cast<Word*>(data), count, value);
}

}  // namespace

void fill(void* data, DType dtype, int64_t count, double value, void* stream) {
  if (count <= 0) return;
  R1V_CHECK(data != nullptr, Argument, "fill: null data pointer");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const float as_float = static_cast<float>(value);
  switch (dtype) {
    case DType::F32:
      launch_fill<uint32_t>(data, count, float_bits(as_float), s);
      break;
    case DType::BF16:
      launch_fill<uint16_t>(data, count, float_to_bf16_bits(as_float), s);
      break;
    case DType::F16:
      launch_fill<uint16_t>(data, count, float_to_f16_bits(as_float), s);
      break;
    case DType::I32:
      launch_fill<int32_t>(data, count, to_i32(value), s);
      break;
    default:
      fail(ErrorCode::DType, "fill: unsupported dtype ", dtype_name(dtype));
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail(ErrorCode::Cuda, "fill kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace r1v::cuda

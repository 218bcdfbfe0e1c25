// CUDA sumOfSquares: one launch per input writes one f64 partial per block (f32 sums per
// thread and across the block), then a single block adds all partials in f64 in a fixed
// order, so the result is deterministic. A loop of launches rather than one multi-tensor
// kernel: each launch is a bandwidth-bound pass over a whole tensor.
#include <algorithm>

#include "../sum_of_squares.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kElementsPerThread = 8;
constexpr int64_t kMaxBlocks = 1024;

int64_t blocks_for(int64_t numel) {
  return std::min(kMaxBlocks, (numel + kThreads * kElementsPerThread - 1) / (kThreads * kElementsPerThread));
}

template <typename T>
__global__ void squares_partials_kernel(const T* __restrict__ x, int64_t n, double* __restrict__ partials) {
  __shared__ float scratch[32];
  float sum = 0.f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float value = to_float(x[i]);
    sum = fmaf(value, value, sum);
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// One block: thread t adds partials t, t + blockDim, ... in f64, then a fixed tree.
__global__ void add_partials_kernel(const double* __restrict__ partials, int64_t count, float* __restrict__ out) {
  __shared__ double sums[kThreads];
  double sum = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  sums[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) sums[threadIdx.x] += sums[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = static_cast<float>(sums[0]);
}

template <typename T>
void launch_partials(const SquaresInput& in, double* partials, cudaStream_t stream) {
  squares_partials_kernel<T><<<static_cast<unsigned>(blocks_for(in.numel)), kThreads, 0, stream>>>(
      static_cast<const T*>(in.data), in.numel, partials);
  check_launch("sumOfSquares partials");
}

}  // namespace

int64_t partials_needed(const std::vector<SquaresInput>& inputs) {
  int64_t count = 0;
  for (const SquaresInput& in : inputs) count += blocks_for(in.numel);
  return count;
}

void sum_of_squares(const std::vector<SquaresInput>& inputs, double* partials, float* out, void* stream_ptr) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  int64_t offset = 0;
  for (const SquaresInput& in : inputs) {
    if (in.numel == 0) continue;
    switch (in.dtype) {
      case DType::BF16:
        launch_partials<__nv_bfloat16>(in, partials + offset, stream);
        break;
      case DType::F16:
        launch_partials<__half>(in, partials + offset, stream);
        break;
      default:
        launch_partials<float>(in, partials + offset, stream);
        break;
    }
    offset += blocks_for(in.numel);
  }
  add_partials_kernel<<<1, kThreads, 0, stream>>>(partials, offset, out);
  check_launch("sumOfSquares total");
}

}  // namespace r1v::cuda

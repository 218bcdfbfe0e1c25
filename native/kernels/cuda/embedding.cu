// CUDA embedding: one block per token copies (forward) or atomically adds (backward) one
// row. A bad id sets kDeviceErrorIdOutOfRange; the forward writes NaN in that token's row,
// the backward adds nothing for it.
#include <type_traits>

#include "../../core/device_error.h"
#include "../../ops/embedding.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;
__device__ __forceinline__ bool id_outside(int32_t id, int64_t vocab) { return id < 0 || id >= vocab; }

template <typename T>
__global__ void __launch_bounds__(kThreads)
    embedding_kernel(const int32_t* __restrict__ ids, int64_t tokens, const T* __restrict__ table, int64_t vocab,
                     int64_t hidden, T* __restrict__ out, int* error_word) {
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const int32_t id = ids[t];
    T* row = out + t * hidden;
    if (id_outside(id, vocab)) {
      if (threadIdx.x == 0) atomicCAS(error_word, kDeviceErrorNone, kDeviceErrorIdOutOfRange);
      const T nan = from_float<T>(__int_as_float(0x7fc00000));
      for (int64_t j = threadIdx.x; j < hidden; j += kThreads) row[j] = nan;
      continue;
    }
    const T* src = table + static_cast<int64_t>(id) * hidden;
    for (int64_t j = threadIdx.x; j < hidden; j += kThreads) row[j] = src[j];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    embedding_backward_kernel(const int32_t* __restrict__ ids, int64_t tokens, const T* __restrict__ dy, int64_t vocab,
                              int64_t hidden, float* __restrict__ sum, int* error_word) {
  for (int64_t t = blockIdx.x; t < tokens; t += gridDim.x) {
    const int32_t id = ids[t];
    if (id_outside(id, vocab)) {
      if (threadIdx.x == 0) atomicCAS(error_word, kDeviceErrorNone, kDeviceErrorIdOutOfRange);
      continue;
    }
    float* dst = sum + static_cast<int64_t>(id) * hidden;
    const T* src = dy + t * hidden;
    for (int64_t j = threadIdx.x; j < hidden; j += kThreads) atomicAdd(dst + j, to_float(src[j]));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    convert_kernel(int64_t n, const float* __restrict__ src, T* __restrict__ dst) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step)
    dst[i] = from_float<T>(src[i]);
}

}  // namespace

void embedding(DType dtype, const int32_t* ids, int64_t tokens, const void* table, int64_t vocab, int64_t hidden,
               void* out, int* error_word, void* stream) {
  if (tokens == 0) return;
  dispatch_float_dtype(dtype, "embedding", [&](auto tag) {
    using T = decltype(tag);
    embedding_kernel<T><<<grid_stride_blocks(tokens, 1), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        ids, tokens, static_cast<const T*>(table), vocab, hidden, static_cast<T*>(out), error_word);
    check_launch("embedding");
  });
}

void embedding_backward(DType dtype, const int32_t* ids, int64_t tokens, const void* dy, int64_t vocab, int64_t hidden,
                        float* f32_sum, void* d_table, int* error_word, void* stream) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  dispatch_float_dtype(dtype, "embedding", [&](auto tag) {
    using T = decltype(tag);
    if (tokens > 0) {
      embedding_backward_kernel<T><<<grid_stride_blocks(tokens, 1), kThreads, 0, st>>>(
          ids, tokens, static_cast<const T*>(dy), vocab, hidden, f32_sum, error_word);
      check_launch("embeddingBackward");
    }
    if constexpr (!std::is_same_v<T, float>) {
      const int64_t n = vocab * hidden;
      if (n > 0) {
        convert_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, st>>>(n, f32_sum, static_cast<T*>(d_table));
        check_launch("embeddingBackward (convert)");
      }
    }
  });
}

}  // namespace r1v::cuda

// CUDA row gathers and scatters: one block per index copies (or atomically adds) one row.
// The overwriting ops first let each index claim its destination row with atomicCAS
// (owner[row] = m; a repeat marks the row -2), then copy only rows claimed once and write
// NaN in the rows claimed twice, so the result does not depend on the order of the blocks.
#include <cuda_runtime.h>

#include <type_traits>

#include "../../core/device_error.h"
#include "../gather_rows.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int32_t kUnclaimed = -1;  // the 0xFF bytes the owner scratch is cleared to
constexpr int32_t kClaimedTwice = -2;

__device__ __forceinline__ bool outside(int32_t row, int64_t n) { return row < 0 || row >= n; }

__device__ __forceinline__ void report(int* error_word, int code) {
  if (threadIdx.x == 0) atomicCAS(error_word, kDeviceErrorNone, code);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gather_rows_kernel(const int32_t* __restrict__ idx, int64_t m, const T* __restrict__ x, int64_t n, int64_t cols,
                       T* __restrict__ out, int* error_word) {
  for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const int32_t row = idx[i];
    T* dst = out + i * cols;
    if (outside(row, n)) {
      report(error_word, kDeviceErrorRowIndexOutOfRange);
      const T nan = from_float<T>(__int_as_float(0x7fc00000));
      for (int64_t j = threadIdx.x; j < cols; j += kThreads) dst[j] = nan;
      continue;
    }
    const T* src = x + static_cast<int64_t>(row) * cols;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) dst[j] = src[j];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    scatter_add_rows_kernel(const int32_t* __restrict__ idx, int64_t m, const T* __restrict__ src, int64_t rows,
                            int64_t cols, float* __restrict__ sum, int* error_word) {
  for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const int32_t row = idx[i];
    if (outside(row, rows)) {
      report(error_word, kDeviceErrorRowIndexOutOfRange);
      continue;
    }
    float* dst = sum + static_cast<int64_t>(row) * cols;
    const T* s = src + i * cols;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) atomicAdd(dst + j, to_float(s[j]));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    convert_kernel(int64_t n, const float* __restrict__ src, T* __restrict__ dst) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step)
    dst[i] = from_float<T>(src[i]);
}

// One thread per index: owner[row] = m, or kClaimedTwice once a second index names the row.
__global__ void __launch_bounds__(kThreads)
    claim_rows_kernel(const int32_t* __restrict__ idx, int64_t m, int64_t n, int32_t* owner, int* error_word) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < m; i += step) {
    const int32_t row = idx[i];
    if (outside(row, n)) {
      atomicCAS(error_word, kDeviceErrorNone, kDeviceErrorRowIndexOutOfRange);
      continue;
    }
    if (atomicCAS(owner + row, kUnclaimed, static_cast<int32_t>(i)) != kUnclaimed) {
      atomicExch(owner + row, kClaimedTwice);
      atomicCAS(error_word, kDeviceErrorNone, kDeviceErrorDuplicateRowIndex);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    write_rows_kernel(const int32_t* __restrict__ idx, int64_t m, const T* __restrict__ src, int64_t n, int64_t cols,
                      T* __restrict__ dst, const int32_t* __restrict__ owner) {
  for (int64_t i = blockIdx.x; i < m; i += gridDim.x) {
    const int32_t row = idx[i];
    if (outside(row, n)) continue;  // reported by claim_rows_kernel
    T* d = dst + static_cast<int64_t>(row) * cols;
    if (owner[row] != static_cast<int32_t>(i)) {
      const T nan = from_float<T>(__int_as_float(0x7fc00000));
      for (int64_t j = threadIdx.x; j < cols; j += kThreads) d[j] = nan;
      continue;
    }
    const T* s = src + i * cols;
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) d[j] = s[j];
  }
}

}  // namespace

void gather_rows(DType dtype, const int32_t* idx, int64_t m, const void* x, int64_t n, int64_t cols, void* out,
                 int* error_word, void* stream) {
  if (m == 0) return;
  dispatch_float_dtype(dtype, "gatherRows", [&](auto tag) {
    using T = decltype(tag);
    gather_rows_kernel<T><<<grid_stride_blocks(m, 1), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        idx, m, static_cast<const T*>(x), n, cols, static_cast<T*>(out), error_word);
    check_launch("gatherRows");
  });
}

void scatter_add_rows(DType dtype, const int32_t* idx, int64_t m, const void* src, int64_t rows, int64_t cols,
                      float* f32_sum, void* out, int* error_word, void* stream) {
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  dispatch_float_dtype(dtype, "scatterAddRows", [&](auto tag) {
    using T = decltype(tag);
    if (m > 0) {
      scatter_add_rows_kernel<T><<<grid_stride_blocks(m, 1), kThreads, 0, st>>>(
          idx, m, static_cast<const T*>(src), rows, cols, f32_sum, error_word);
      check_launch("scatterAddRows");
    }
    if constexpr (!std::is_same_v<T, float>) {
      const int64_t n = rows * cols;
      if (n > 0) {
        convert_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, st>>>(n, f32_sum, static_cast<T*>(out));
        check_launch("scatterAddRows (convert)");
      }
    }
  });
}

void write_rows(DType dtype, const int32_t* idx, int64_t m, const void* src, int64_t n, int64_t cols, void* dst,
                int32_t* owner, int* error_word, void* stream) {
  if (m == 0) return;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (n > 0) {
    cudaError_t err = cudaMemsetAsync(owner, 0xFF, static_cast<size_t>(n) * sizeof(int32_t), st);
    if (err != cudaSuccess) fail(ErrorCode::Cuda, "writeRows: clearing the row owners failed: ", cudaGetErrorString(err));
  }
  claim_rows_kernel<<<grid_stride_blocks(m, kThreads), kThreads, 0, st>>>(idx, m, n, owner, error_word);
  check_launch("writeRows (claim)");
  dispatch_float_dtype(dtype, "writeRows", [&](auto tag) {
    using T = decltype(tag);
    write_rows_kernel<T><<<grid_stride_blocks(m, 1), kThreads, 0, st>>>(idx, m, static_cast<const T*>(src), n, cols,
                                                                         static_cast<T*>(dst), owner);
    check_launch("writeRows");
  });
}

}  // namespace r1v::cuda

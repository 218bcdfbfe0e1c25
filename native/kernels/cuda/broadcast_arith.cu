// CUDA elementwise glue: grid-stride loops with f32 math; column sums as f32 partials per
// row chunk (threads of a block on consecutive columns, so loads coalesce) followed by the
// in-order sum of the chunks (deterministic, no atomics).
#include "../broadcast_arith.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;
// Rows per chunk of the column sums, at least; more when the grid's y extent would overflow.
constexpr int64_t kChunkRows = 128;
constexpr int64_t kMaxChunks = 4096;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    broadcast_binary_kernel(BroadcastOp op, const T* __restrict__ a, int64_t n, const T* __restrict__ b, int64_t nb,
                            T* __restrict__ out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) {
    const float x = to_float(a[i]), y = to_float(b[i % nb]);
    out[i] = from_float<T>(op == BroadcastOp::Add ? x + y : x * y);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    scale_kernel(const T* __restrict__ x, int64_t n, float alpha, T* __restrict__ out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step)
    out[i] = from_float<T>(alpha * to_float(x[i]));
}

// partials[chunk, col] = Σ_{rows of chunk} x[r, col]·(w ? w[r, col] : 1); grid (column blocks, chunks).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    column_partials_kernel(const T* __restrict__ x, const T* __restrict__ w, int64_t rows, int64_t cols,
                           int64_t chunk_rows, float* __restrict__ partials) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (col >= cols) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * chunk_rows;
  const int64_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  float sum = 0.f;
  for (int64_t r = r0; r < r1; ++r) {
    const float v = to_float(x[r * cols + col]);
    sum += w ? v * to_float(w[r * cols + col]) : v;
  }
  partials[static_cast<int64_t>(blockIdx.y) * cols + col] = sum;
}

int64_t chunk_rows_for(int64_t rows) {
  const int64_t per_chunk = (rows + kMaxChunks - 1) / kMaxChunks;
  return per_chunk > kChunkRows ? per_chunk : kChunkRows;
}

}  // namespace

void broadcast_binary(BroadcastOp op, DType dtype, const void* a, int64_t n, const void* b, int64_t nb, void* out,
                      void* stream) {
  if (n == 0) return;
  dispatch_float_dtype(dtype, op == BroadcastOp::Add ? "add" : "scaleChannels", [&](auto tag) {
    using T = decltype(tag);
    broadcast_binary_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        op, static_cast<const T*>(a), n, static_cast<const T*>(b), nb, static_cast<T*>(out));
    check_launch(op == BroadcastOp::Add ? "add" : "scaleChannels");
  });
}

void scale(DType dtype, const void* x, int64_t n, float alpha, void* out, void* stream) {
  if (n == 0) return;
  dispatch_float_dtype(dtype, "scale", [&](auto tag) {
    using T = decltype(tag);
    scale_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(x), n, alpha, static_cast<T*>(out));
    check_launch("scale");
  });
}

int64_t column_sum_chunks(int64_t rows) { return (rows + chunk_rows_for(rows) - 1) / chunk_rows_for(rows); }

void column_sums(DType dtype, const void* x, const void* w, int64_t rows, int64_t cols, float* partials, void* out,
                 void* stream) {
  if (cols == 0) return;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const int64_t chunks = column_sum_chunks(rows);
  const unsigned col_blocks = static_cast<unsigned>((cols + kThreads - 1) / kThreads);
  dispatch_float_dtype(dtype, "column sums", [&](auto tag) {
    using T = decltype(tag);
    if (chunks > 0) {
      column_partials_kernel<T><<<dim3(col_blocks, static_cast<unsigned>(chunks)), kThreads, 0, st>>>(
          static_cast<const T*>(x), static_cast<const T*>(w), rows, cols, chunk_rows_for(rows), partials);
      check_launch("column sums (partials)");
    }
    sum_partials_in_order_kernel<T><<<col_blocks, kThreads, 0, st>>>(partials, chunks, cols, static_cast<T*>(out));
    check_launch("column sums");
  });
}

}  // namespace r1v::cuda

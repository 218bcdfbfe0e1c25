// CUDA RMSNorm / LayerNorm kernels (f32/bf16/f16 storage, f32 math and statistics). One
// block per row for the forward pass and for dx; the parameter gradients are column sums
// made deterministic without atomics: each block of kNormRowsPerPartial rows writes partial
// sums (its warps' lanes added in a fixed order), then the partials are added in block order.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "../norms.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kMaxRowThreads = 512;
constexpr int64_t kMaxRowBlocks = 1 << 20;     // row kernels loop over the rest
constexpr int kColumnTile = 32;                // columns per column-sum block (one warp wide)
constexpr int kColumnLanes = 8;                // warps per column-sum block, each taking every 8th row
constexpr int64_t kMaxPartialBlocksY = 65535;  // grid.y limit; the column kernel loops over the rest

// About four elements per thread, a whole number of warps.
int row_threads(int64_t cols) {
  const int64_t warps = (cols + 4 * 32 - 1) / (4 * 32);
  return static_cast<int>(std::min<int64_t>(kMaxRowThreads, 32 * std::max<int64_t>(1, warps)));
}

unsigned row_blocks(int64_t rows) { return static_cast<unsigned>(std::min(rows, kMaxRowBlocks)); }

// mean == nullptr: RMSNorm (no centring); bias may be nullptr.
template <typename T>
__global__ void norm_forward_kernel(int64_t rows, int64_t cols, float eps, const T* __restrict__ x,
                                    const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                                    float* __restrict__ mean, float* __restrict__ rstd) {
  __shared__ float scratch[32];
  const float inv_d = 1.f / static_cast<float>(cols);
  for (int64_t t = blockIdx.x; t < rows; t += gridDim.x) {
    const T* xr = x + t * cols;
    T* yr = y + t * cols;
    float mu = 0.f;
    if (mean) {
      float sum = 0.f;
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum += to_float(xr[i]);
      mu = block_sum(sum, scratch) * inv_d;
    }
    float sq = 0.f;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float d = to_float(xr[i]) - mu;
      sq += d * d;
    }
    const float r = rsqrtf(block_sum(sq, scratch) * inv_d + eps);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      float v = (to_float(xr[i]) - mu) * r * to_float(w[i]);
      if (b) v += to_float(b[i]);
      yr[i] = from_float<T>(v);
    }
    if (threadIdx.x == 0) {
      if (mean) mean[t] = mu;
      rstd[t] = r;
    }
  }
}

// x̂ = (x − mean)·rstd, g = dY·weight: dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), without the
// mean(g) term for RMSNorm (mean == nullptr).
template <typename T>
__global__ void norm_backward_dx_kernel(int64_t rows, int64_t cols, const T* __restrict__ x, const T* __restrict__ w,
                                        const float* __restrict__ mean, const float* __restrict__ rstd,
                                        const T* __restrict__ dy, T* __restrict__ dx) {
  __shared__ float scratch[32];
  const float inv_d = 1.f / static_cast<float>(cols);
  for (int64_t t = blockIdx.x; t < rows; t += gridDim.x) {
    const T* xr = x + t * cols;
    const T* dyr = dy + t * cols;
    T* dxr = dx + t * cols;
    const float mu = mean ? mean[t] : 0.f, r = rstd[t];
    float sum_g = 0.f, sum_gx = 0.f;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float g = to_float(dyr[i]) * to_float(w[i]);
      sum_g += g;
      sum_gx += g * (to_float(xr[i]) - mu) * r;
    }
    const float mean_g = mean ? block_sum(sum_g, scratch) * inv_d : 0.f;
    const float mean_gx = block_sum(sum_gx, scratch) * inv_d;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float xh = (to_float(xr[i]) - mu) * r;
      dxr[i] = from_float<T>(r * (to_float(dyr[i]) * to_float(w[i]) - mean_g - xh * mean_gx));
    }
  }
}

// Block (kColumnTile, kColumnLanes): lane ty of column col sums rows ty, ty + 8, ... of its
// row block; the lanes are then added in order. partials: [sums][partial_blocks][cols] with
// sums = 2 (Σ dY·x̂, Σ dY) for LayerNorm, 1 (Σ dY·x̂) for RMSNorm.
template <typename T>
__global__ void param_partials_kernel(int64_t rows, int64_t cols, int64_t partial_blocks, const T* __restrict__ x,
                                      const float* __restrict__ mean, const float* __restrict__ rstd,
                                      const T* __restrict__ dy, float* __restrict__ partials) {
  __shared__ float lanes[2][kColumnLanes][kColumnTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int sums = mean ? 2 : 1;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColumnTile + tx;
  for (int64_t blk = blockIdx.y; blk < partial_blocks; blk += gridDim.y) {
    float acc_w = 0.f, acc_b = 0.f;
    if (col < cols) {
      const int64_t end = std::min(rows, (blk + 1) * kNormRowsPerPartial);
      for (int64_t row = blk * kNormRowsPerPartial + ty; row < end; row += kColumnLanes) {
        const float mu = mean ? mean[row] : 0.f;
        const float d = to_float(dy[row * cols + col]);
        acc_w += d * (to_float(x[row * cols + col]) - mu) * rstd[row];
        acc_b += d;
      }
    }
    lanes[0][ty][tx] = acc_w;
    lanes[1][ty][tx] = acc_b;
    __syncthreads();
    if (ty < sums && col < cols) {
      float total = 0.f;
      for (int l = 0; l < kColumnLanes; ++l) total += lanes[ty][l][tx];
      partials[(ty * partial_blocks + blk) * cols + col] = total;
    }
    __syncthreads();  // lanes is reused by the next row block
  }
}

}  // namespace

void norm_forward(const NormShape& s, const void* x, const void* weight, const void* bias, void* y, float* mean,
                  float* rstd, void* stream) {
  if (s.rows == 0) return;
  const char* op = mean ? "layerNorm" : "rmsNorm";
  dispatch_float_dtype(s.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    norm_forward_kernel<T><<<row_blocks(s.rows), row_threads(s.cols), 0, static_cast<cudaStream_t>(stream)>>>(
        s.rows, s.cols, s.eps, static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias),
        static_cast<T*>(y), mean, rstd);
    check_launch(op);
  });
}

void norm_backward(const NormShape& s, const void* x, const void* weight, const float* mean, const float* rstd,
                   const void* dy, void* dx, void* d_weight, void* d_bias, float* workspace, void* stream) {
  if (s.rows == 0) return;
  const char* op = mean ? "layerNormBackward" : "rmsNormBackward";
  dispatch_float_dtype(s.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    auto cs = static_cast<cudaStream_t>(stream);
    norm_backward_dx_kernel<T><<<row_blocks(s.rows), row_threads(s.cols), 0, cs>>>(
        s.rows, s.cols, static_cast<const T*>(x), static_cast<const T*>(weight), mean, rstd, static_cast<const T*>(dy),
        static_cast<T*>(dx));
    check_launch(op);

    const int64_t partial_blocks = norm_partial_blocks(s.rows);
    const dim3 grid(static_cast<unsigned>((s.cols + kColumnTile - 1) / kColumnTile),
                    static_cast<unsigned>(std::min(partial_blocks, kMaxPartialBlocksY)));
    param_partials_kernel<T><<<grid, dim3(kColumnTile, kColumnLanes), 0, cs>>>(
        s.rows, s.cols, partial_blocks, static_cast<const T*>(x), mean, rstd, static_cast<const T*>(dy), workspace);
    check_launch(op);
    const unsigned finish_blocks = static_cast<unsigned>((s.cols + 255) / 256);
    sum_partials_in_order_kernel<T>
        <<<finish_blocks, 256, 0, cs>>>(workspace, partial_blocks, s.cols, static_cast<T*>(d_weight));
    check_launch(op);
    if (mean) {
      sum_partials_in_order_kernel<T><<<finish_blocks, 256, 0, cs>>>(workspace + partial_blocks * s.cols,
                                                                     partial_blocks, s.cols, static_cast<T*>(d_bias));
      check_launch(op);
    }
  });
}

}  // namespace r1v::cuda

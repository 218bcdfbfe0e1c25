// CUDA connector kernels (f32/bf16/f16 storage, f32 math): the pixel-shuffled LayerNorm
// forward and backward, the GELU backward and the bias-gradient column sums. The pixel
// shuffle is only addressing: a block per shuffled row reads (and, in backward, writes) its
// four runs of C channels of x in place. Column sums are deterministic: each block of
// kConnectorRowsPerPartial rows writes partial sums, added afterwards in block order.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "../connector.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kRowThreads = 256;
constexpr int kColumnTile = 32;        // columns per column-sum block (one warp wide)
constexpr int kColumnLanes = 8;        // warps per column-sum block, each taking every 8th row
constexpr int kMaxRowBlocksY = 65535;  // grid.y limit; a grid-stride loop covers the rest

struct Shuffle {
  int64_t h, w, channels;
  // Offset in x of run k ∈ 0..3 of shuffled row t.
  __device__ int64_t run_offset(int64_t t, int k) const {
    const int64_t h2 = h / 2, w2 = w / 2;
    const int64_t b = t / (h2 * w2), i = (t / w2) % h2, j = t % w2;
    return ((b * h + 2 * i + k / 2) * w + 2 * j + k % 2) * channels;
  }
};

Shuffle shuffle_of(const ConnectorShape& s) { return Shuffle{s.h, s.w, s.channels}; }

__device__ __forceinline__ float gelu_grad(float z) {
  // d/dz of z·Φ(z) = Φ(z) + z·φ(z)
  return 0.5f * (1.f + erff(z * 0.70710678118654752f)) + z * 0.39894228040143268f * expf(-0.5f * z * z);
}

template <typename T>
__global__ void shuffle_layernorm_kernel(Shuffle sh, float eps, const T* __restrict__ x, const T* __restrict__ ln_w,
                                         const T* __restrict__ ln_b, T* __restrict__ normed, float* __restrict__ mean,
                                         float* __restrict__ rstd) {
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x, c = sh.channels, k = 4 * c;
  int64_t off[4];
#pragma unroll
  for (int run = 0; run < 4; ++run) off[run] = sh.run_offset(t, run);

  float sum = 0.f;
#pragma unroll
  for (int run = 0; run < 4; ++run)
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) sum += to_float(x[off[run] + i]);
  const float mu = block_sum(sum, scratch) / static_cast<float>(k);

  float sq = 0.f;
#pragma unroll
  for (int run = 0; run < 4; ++run)
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      const float d = to_float(x[off[run] + i]) - mu;
      sq += d * d;
    }
  const float r = rsqrtf(block_sum(sq, scratch) / static_cast<float>(k) + eps);

  T* out = normed + t * k;
#pragma unroll
  for (int run = 0; run < 4; ++run)
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      const int64_t e = run * c + i;
      out[e] = from_float<T>((to_float(x[off[run] + i]) - mu) * r * to_float(ln_w[e]) + to_float(ln_b[e]));
    }
  if (threadIdx.x == 0) {
    mean[t] = mu;
    rstd[t] = r;
  }
}

// With x̂ = (s − mean)·rstd and g = d_normed·ln_weight: ds = rstd·(g − mean(g) − x̂·mean(g·x̂)),
// written to x's positions of the row (each element of dx belongs to exactly one row).
template <typename T>
__global__ void layernorm_backward_kernel(Shuffle sh, const T* __restrict__ x, const T* __restrict__ ln_w,
                                          const float* __restrict__ mean, const float* __restrict__ rstd,
                                          const T* __restrict__ d_normed, T* __restrict__ dx) {
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x, c = sh.channels, k = 4 * c;
  const float mu = mean[t], r = rstd[t];
  const T* dn = d_normed + t * k;
  int64_t off[4];
#pragma unroll
  for (int run = 0; run < 4; ++run) off[run] = sh.run_offset(t, run);

  float sum_g = 0.f, sum_gx = 0.f;
#pragma unroll
  for (int run = 0; run < 4; ++run)
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      const int64_t e = run * c + i;
      const float g = to_float(dn[e]) * to_float(ln_w[e]);
      sum_g += g;
      sum_gx += g * (to_float(x[off[run] + i]) - mu) * r;
    }
  const float mean_g = block_sum(sum_g, scratch) / static_cast<float>(k);
  const float mean_gx = block_sum(sum_gx, scratch) / static_cast<float>(k);

#pragma unroll
  for (int run = 0; run < 4; ++run)
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
      const int64_t e = run * c + i;
      const float xh = (to_float(x[off[run] + i]) - mu) * r;
      dx[off[run] + i] = from_float<T>(r * (to_float(dn[e]) * to_float(ln_w[e]) - mean_g - xh * mean_gx));
    }
}

// Per-element terms of the column sums. Each gives the kSums values element (row, col)
// contributes (and may write the element back, as the GELU backward does).
template <typename T>
struct ColumnOf {
  static constexpr int kSums = 1;
  const T* src;
  int64_t cols;
  __device__ void operator()(int64_t row, int64_t col, float* v) const { v[0] = to_float(src[row * cols + col]); }
};

template <typename T>
struct GeluBackward {
  static constexpr int kSums = 1;
  const T* z;
  T* da;  // becomes dz
  int64_t cols;
  __device__ void operator()(int64_t row, int64_t col, float* v) const {
    const int64_t i = row * cols + col;
    const float dz = to_float(da[i]) * gelu_grad(to_float(z[i]));
    da[i] = from_float<T>(dz);
    v[0] = dz;
  }
};

template <typename T>
struct LayerNormParamGrads {
  static constexpr int kSums = 2;  // Σ d_normed·x̂, Σ d_normed
  Shuffle sh;
  const T* x;
  const float* mean;
  const float* rstd;
  const T* d_normed;
  __device__ void operator()(int64_t row, int64_t col, float* v) const {
    const int64_t c = sh.channels;
    const int run = static_cast<int>(col / c);
    const float xh = (to_float(x[sh.run_offset(row, run) + col % c]) - mean[row]) * rstd[row];
    const float d = to_float(d_normed[row * 4 * c + col]);
    v[0] = d * xh;
    v[1] = d;
  }
};

// Block (kColumnTile, kColumnLanes): lane ty of column col sums rows ty, ty + 8, ... of its row
// block; the lanes are then added in order. partials: [kSums][row_blocks][cols].
template <typename Term>
__global__ void column_partials_kernel(Term term, int64_t rows, int64_t cols, int64_t row_blocks,
                                       float* __restrict__ partials) {
  constexpr int kSums = Term::kSums;
  __shared__ float lanes[kSums][kColumnLanes][kColumnTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColumnTile + tx;
  for (int64_t blk = blockIdx.y; blk < row_blocks; blk += gridDim.y) {
    float acc[kSums] = {};
    if (col < cols) {
      const int64_t end = std::min(rows, (blk + 1) * kConnectorRowsPerPartial);
      for (int64_t row = blk * kConnectorRowsPerPartial + ty; row < end; row += kColumnLanes) {
        float v[kSums];
        term(row, col, v);
#pragma unroll
        for (int s = 0; s < kSums; ++s) acc[s] += v[s];
      }
    }
#pragma unroll
    for (int s = 0; s < kSums; ++s) lanes[s][ty][tx] = acc[s];
    __syncthreads();
    if (ty < kSums && col < cols) {
      float total = 0.f;
      for (int l = 0; l < kColumnLanes; ++l) total += lanes[ty][l][tx];
      partials[(ty * row_blocks + blk) * cols + col] = total;
    }
    __syncthreads();  // lanes is reused by the next row block
  }
}

// Column sums of term over rows × cols into dsts[0..kSums), through workspace.
template <typename T, typename Term>
void column_sums(const Term& term, int64_t rows, int64_t cols, T* const* dsts, float* workspace, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const int64_t row_blocks = (rows + kConnectorRowsPerPartial - 1) / kConnectorRowsPerPartial;
  const dim3 grid(static_cast<unsigned>((cols + kColumnTile - 1) / kColumnTile),
                  static_cast<unsigned>(std::min<int64_t>(row_blocks, kMaxRowBlocksY)));
  column_partials_kernel<Term>
      <<<grid, dim3(kColumnTile, kColumnLanes), 0, stream>>>(term, rows, cols, row_blocks, workspace);
  check_launch("connector column sums");
  const unsigned finish_blocks = static_cast<unsigned>((cols + 255) / 256);
  for (int s = 0; s < Term::kSums; ++s) {
    sum_partials_in_order_kernel<T>
        <<<finish_blocks, 256, 0, stream>>>(workspace + s * row_blocks * cols, row_blocks, cols, dsts[s]);
    check_launch("connector column sums (finish)");
  }
}

}  // namespace

void connector_shuffle_layernorm(const ConnectorShape& s, const void* x, const void* ln_weight, const void* ln_bias,
                                 void* normed, float* mean, float* rstd, void* stream) {
  if (s.rows() == 0) return;
  dispatch_float_dtype(s.dtype, "connector", [&](auto tag) {
    using T = decltype(tag);
    shuffle_layernorm_kernel<T><<<static_cast<unsigned>(s.rows()), kRowThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        shuffle_of(s), s.eps, static_cast<const T*>(x), static_cast<const T*>(ln_weight),
        static_cast<const T*>(ln_bias), static_cast<T*>(normed), mean, rstd);
    check_launch("connector shuffle_layernorm");
  });
}

void connector_gelu_backward(DType dtype, int64_t rows, int64_t cols, const void* z, void* da, void* d_bias,
                             float* workspace, void* stream) {
  dispatch_float_dtype(dtype, "connector", [&](auto tag) {
    using T = decltype(tag);
    T* dsts[] = {static_cast<T*>(d_bias)};
    column_sums<T>(GeluBackward<T>{static_cast<const T*>(z), static_cast<T*>(da), cols}, rows, cols, dsts, workspace,
                   static_cast<cudaStream_t>(stream));
  });
}

void connector_column_sum(DType dtype, int64_t rows, int64_t cols, const void* src, void* dst, float* workspace,
                          void* stream) {
  dispatch_float_dtype(dtype, "connector", [&](auto tag) {
    using T = decltype(tag);
    T* dsts[] = {static_cast<T*>(dst)};
    column_sums<T>(ColumnOf<T>{static_cast<const T*>(src), cols}, rows, cols, dsts, workspace,
                   static_cast<cudaStream_t>(stream));
  });
}

void connector_layernorm_backward(const ConnectorShape& s, const void* x, const void* ln_weight, const float* mean,
                                  const float* rstd, const void* d_normed, void* dx, void* d_ln_weight, void* d_ln_bias,
                                  float* workspace, void* stream) {
  if (s.rows() == 0) return;
  dispatch_float_dtype(s.dtype, "connector", [&](auto tag) {
    using T = decltype(tag);
    auto cs = static_cast<cudaStream_t>(stream);
    layernorm_backward_kernel<T><<<static_cast<unsigned>(s.rows()), kRowThreads, 0, cs>>>(
        shuffle_of(s), static_cast<const T*>(x), static_cast<const T*>(ln_weight), mean, rstd,
        static_cast<const T*>(d_normed), static_cast<T*>(dx));
    check_launch("connector layernorm_backward");
    T* dsts[] = {static_cast<T*>(d_ln_weight), static_cast<T*>(d_ln_bias)};
    column_sums<T>(
        LayerNormParamGrads<T>{shuffle_of(s), static_cast<const T*>(x), mean, rstd, static_cast<const T*>(d_normed)},
        s.rows(), s.features(), dsts, workspace, cs);
  });
}

}  // namespace r1v::cuda

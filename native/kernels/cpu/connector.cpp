// CPU connector kernels (f32): the pixel-shuffled LayerNorm forward and backward, the GELU
// backward and the bias-gradient column sums. Rows are split over the pool; inner loops run
// over contiguous channel runs (each shuffled row is four runs of C channels of x) with
// independent accumulator lanes, so the compiler vectorises them. Column sums go through
// per-block partials (blocks of kConnectorRowsPerPartial rows) added in block order, so the
// result does not depend on the thread count.
#include <algorithm>
#include <cmath>

#include "../../core/thread_pool.h"
#include "../connector.h"
#include "vec_math.h"

namespace r1v::cpu {

namespace {

constexpr int kLanes = 16;

// Where run k ∈ 0..3 of shuffled row t starts in x.
struct ShuffleAddressing {
  const ConnectorShape& s;
  int64_t run_offset(int64_t t, int k) const {
    const int64_t h2 = s.h / 2, w2 = s.w / 2;
    const int64_t b = t / (h2 * w2), i = (t / w2) % h2, j = t % w2;
    return ((b * s.h + 2 * i + k / 2) * s.w + 2 * j + k % 2) * s.channels;
  }
};

float lane_sum(const float* acc) {
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  return static_cast<float>(total);
}

float row_sum(const float* x, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l];
  for (; i < n; ++i) acc[0] += x[i];
  return lane_sum(acc);
}

// dst[j] = Σ_blocks partials[block·cols + j], blocks added in order.
void sum_partials(const float* partials, int64_t blocks, int64_t cols, float* dst) {
  ThreadPool::global().parallel_for(cols, 1024, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) dst[j] = 0.f;
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const float* p = partials + blk * cols;
      for (int64_t j = j0; j < j1; ++j) dst[j] += p[j];
    }
  });
}

int64_t partial_blocks(int64_t rows) { return (rows + kConnectorRowsPerPartial - 1) / kConnectorRowsPerPartial; }

// Runs fn(row0, row1, partial_index) over blocks of rows in parallel.
template <typename Fn>
void for_row_blocks(int64_t rows, Fn&& fn) {
  ThreadPool::global().parallel_for(partial_blocks(rows), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk)
      fn(blk * kConnectorRowsPerPartial, std::min(rows, (blk + 1) * kConnectorRowsPerPartial), blk);
  });
}

// GELU'(z) = Φ(z) + z·φ(z) (derivative of the erf form z·Φ(z)).
inline float gelu_grad(float z) {
  constexpr float kInvSqrt2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;
  return 0.5f * (1.f + std::erf(z * kInvSqrt2)) + z * kInvSqrt2Pi * std::exp(-0.5f * z * z);
}

}  // namespace

void connector_shuffle_layernorm(const ConnectorShape& s, const void* x_, const void* ln_weight, const void* ln_bias,
                                 void* normed_, float* mean, float* rstd) {
  const auto* x = static_cast<const float*>(x_);
  const auto* w = static_cast<const float*>(ln_weight);
  const auto* b = static_cast<const float*>(ln_bias);
  auto* normed = static_cast<float*>(normed_);
  const int64_t rows = s.rows(), c = s.channels, k = s.features();
  const ShuffleAddressing at{s};
  ThreadPool::global().parallel_for(rows, std::max<int64_t>(1, 16384 / k), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* out = normed + t * k;
      for (int run = 0; run < 4; ++run) std::copy_n(x + at.run_offset(t, run), c, out + run * c);
      const float mu = row_sum(out, k) / static_cast<float>(k);
      for (int64_t e = 0; e < k; ++e) out[e] -= mu;
      const float r = 1.f / std::sqrt(dot(out, out, k) / static_cast<float>(k) + s.eps);
      for (int64_t e = 0; e < k; ++e) out[e] = out[e] * r * w[e] + b[e];
      mean[t] = mu;
      rstd[t] = r;
    }
  });
}

void connector_gelu_backward(int64_t rows, int64_t cols, const void* z_, void* da_, void* d_bias, float* workspace) {
  const auto* z = static_cast<const float*>(z_);
  auto* da = static_cast<float*>(da_);
  for_row_blocks(rows, [&](int64_t t0, int64_t t1, int64_t blk) {
    float* partial = workspace + blk * cols;
    std::fill_n(partial, cols, 0.f);
    for (int64_t t = t0; t < t1; ++t) {
      const float* zr = z + t * cols;
      float* dr = da + t * cols;
      for (int64_t j = 0; j < cols; ++j) dr[j] *= gelu_grad(zr[j]);
      for (int64_t j = 0; j < cols; ++j) partial[j] += dr[j];
    }
  });
  sum_partials(workspace, partial_blocks(rows), cols, static_cast<float*>(d_bias));
}

void connector_column_sum(int64_t rows, int64_t cols, const void* src_, void* dst, float* workspace) {
  const auto* src = static_cast<const float*>(src_);
  for_row_blocks(rows, [&](int64_t t0, int64_t t1, int64_t blk) {
    float* partial = workspace + blk * cols;
    std::fill_n(partial, cols, 0.f);
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t j = 0; j < cols; ++j) partial[j] += src[t * cols + j];
  });
  sum_partials(workspace, partial_blocks(rows), cols, static_cast<float*>(dst));
}

// With x̂ = (s − mean)·rstd and g = d_normed·ln_weight (per row, over its K = 4C features):
// ds = rstd·(g − mean(g) − x̂·mean(g·x̂)).
void connector_layernorm_backward(const ConnectorShape& s, const void* x_, const void* ln_weight, const float* mean,
                                  const float* rstd, const void* d_normed, void* dx_, void* d_ln_weight,
                                  void* d_ln_bias, float* workspace) {
  const auto* x = static_cast<const float*>(x_);
  const auto* w = static_cast<const float*>(ln_weight);
  const auto* dn = static_cast<const float*>(d_normed);
  auto* dx = static_cast<float*>(dx_);
  const int64_t rows = s.rows(), c = s.channels, k = s.features(), blocks = partial_blocks(rows);
  const ShuffleAddressing at{s};
  for_row_blocks(rows, [&](int64_t t0, int64_t t1, int64_t blk) {
    float* pw = workspace + blk * k;             // Σ d_normed·x̂ of this block
    float* pb = workspace + (blocks + blk) * k;  // Σ d_normed
    std::fill_n(pw, k, 0.f);
    std::fill_n(pb, k, 0.f);
    for (int64_t t = t0; t < t1; ++t) {
      const float mu = mean[t], r = rstd[t];
      const float* dnr = dn + t * k;
      float acc_g[kLanes] = {}, acc_gx[kLanes] = {};
      for (int run = 0; run < 4; ++run) {
        const float* xr = x + at.run_offset(t, run);
        const int64_t base = run * c;
        auto accumulate = [&](int64_t i, int lane) {
          const float xh = (xr[i] - mu) * r, d = dnr[base + i], g = d * w[base + i];
          acc_g[lane] += g;
          acc_gx[lane] += g * xh;
          pw[base + i] += d * xh;
          pb[base + i] += d;
        };
        int64_t i = 0;
        for (; i + kLanes <= c; i += kLanes)
          for (int l = 0; l < kLanes; ++l) accumulate(i + l, l);
        for (; i < c; ++i) accumulate(i, 0);
      }
      const float mean_g = lane_sum(acc_g) / static_cast<float>(k);
      const float mean_gx = lane_sum(acc_gx) / static_cast<float>(k);
      for (int run = 0; run < 4; ++run) {
        const int64_t off = at.run_offset(t, run), base = run * c;
        const float* xr = x + off;
        float* dxr = dx + off;
        for (int64_t i = 0; i < c; ++i)
          dxr[i] = r * (dnr[base + i] * w[base + i] - mean_g - (xr[i] - mu) * r * mean_gx);
      }
    }
  });
  sum_partials(workspace, blocks, k, static_cast<float*>(d_ln_weight));
  sum_partials(workspace + blocks * k, blocks, k, static_cast<float*>(d_ln_bias));
}

}  // namespace r1v::cpu

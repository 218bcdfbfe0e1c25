// CPU RMSNorm / LayerNorm kernels (f32). Rows are split over the pool; the row loops keep
// independent accumulator lanes so they vectorise, and are compiled for AVX-512, AVX2+FMA
// and portable code (picked from cpu_info().isa, like vec_math). Parameter gradients go
// through per-block partials (blocks of kNormRowsPerPartial rows) added in block order, so
// they do not depend on the thread count.
#include "../norms.h"

#include <algorithm>
#include <cmath>

#include "../../core/cpu_info.h"
#include "../../core/thread_pool.h"

namespace r1v::cpu {

namespace {

constexpr int kLanes = 16;

struct ForwardArgs {
  NormShape s;
  const float *x, *w, *b;  // b nullptr: no bias
  float *y, *mean, *rstd;  // mean nullptr: RMSNorm (no centring)
};

struct BackwardArgs {
  NormShape s;
  const float *x, *w, *mean, *rstd, *dy;  // mean nullptr: RMSNorm
  float *dx, *workspace;
};

template <typename Term>
[[gnu::always_inline]] inline float lane_sum(int64_t n, Term term) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += term(i + l);
  for (; i < n; ++i) acc[0] += term(i);
  double total = 0;
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  return static_cast<float>(total);
}

[[gnu::always_inline]] inline void forward_rows(const ForwardArgs& a, int64_t t0, int64_t t1) {
  const int64_t d = a.s.cols;
  const float inv_d = 1.f / static_cast<float>(d);
  const float* __restrict w = a.w;
  const float* __restrict b = a.b;
  for (int64_t t = t0; t < t1; ++t) {
    const float* __restrict x = a.x + t * d;
    float* __restrict y = a.y + t * d;
    float mu = 0.f;
    if (a.mean) mu = lane_sum(d, [&](int64_t i) { return x[i]; }) * inv_d;
    const float r =
        1.f / std::sqrt(lane_sum(d, [&](int64_t i) { return (x[i] - mu) * (x[i] - mu); }) * inv_d + a.s.eps);
    if (b) {
      for (int64_t i = 0; i < d; ++i) y[i] = (x[i] - mu) * r * w[i] + b[i];
    } else {
      for (int64_t i = 0; i < d; ++i) y[i] = (x[i] - mu) * r * w[i];
    }
    if (a.mean) a.mean[t] = mu;
    a.rstd[t] = r;
  }
}

// Rows of one partial block: dx, and this block's Σ dY·x̂ (and Σ dY) per column.
[[gnu::always_inline]] inline void backward_block(const BackwardArgs& a, int64_t blk) {
  const int64_t d = a.s.cols, blocks = norm_partial_blocks(a.s.rows);
  const int64_t t0 = blk * kNormRowsPerPartial, t1 = std::min(a.s.rows, t0 + kNormRowsPerPartial);
  const float inv_d = 1.f / static_cast<float>(d);
  const float* __restrict w = a.w;
  float* __restrict pw = a.workspace + blk * d;
  float* __restrict pb = a.mean ? a.workspace + (blocks + blk) * d : nullptr;
  std::fill_n(pw, d, 0.f);
  if (pb) std::fill_n(pb, d, 0.f);
  for (int64_t t = t0; t < t1; ++t) {
    const float* __restrict x = a.x + t * d;
    const float* __restrict dy = a.dy + t * d;
    float* __restrict dx = a.dx + t * d;
    const float mu = a.mean ? a.mean[t] : 0.f, r = a.rstd[t];
    for (int64_t i = 0; i < d; ++i) pw[i] += dy[i] * (x[i] - mu) * r;
    if (pb)
      for (int64_t i = 0; i < d; ++i) pb[i] += dy[i];
    const float mean_gx = lane_sum(d, [&](int64_t i) { return dy[i] * w[i] * (x[i] - mu) * r; }) * inv_d;
    const float mean_g = pb ? lane_sum(d, [&](int64_t i) { return dy[i] * w[i]; }) * inv_d : 0.f;
    for (int64_t i = 0; i < d; ++i) dx[i] = r * (dy[i] * w[i] - mean_g - (x[i] - mu) * r * mean_gx);
  }
}

// dst[j] = Σ_blocks partials[block·cols + j], blocks added in order.
[[gnu::always_inline]] inline void sum_partials(const float* partials, int64_t blocks, int64_t cols, float* dst,
                                                int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) dst[j] = 0.f;
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const float* p = partials + blk * cols;
    for (int64_t j = j0; j < j1; ++j) dst[j] += p[j];
  }
}

// The row loops compiled once per instruction set.
#define R1V_NORM_VARIANT(suffix, target)                                                                       \
  target void forward_rows_##suffix(const ForwardArgs& a, int64_t t0, int64_t t1) { forward_rows(a, t0, t1); } \
  target void backward_block_##suffix(const BackwardArgs& a, int64_t blk) { backward_block(a, blk); }          \
  target void sum_partials_##suffix(const float* p, int64_t blocks, int64_t cols, float* dst, int64_t j0,      \
                                    int64_t j1) {                                                              \
    sum_partials(p, blocks, cols, dst, j0, j1);                                                                \
  }
#if defined(__x86_64__)
R1V_NORM_VARIANT(avx512, __attribute__((target("avx512f,avx2,fma"))))
R1V_NORM_VARIANT(avx2, __attribute__((target("avx2,fma"))))
#endif
R1V_NORM_VARIANT(generic, )
#undef R1V_NORM_VARIANT

struct Variant {
  void (*forward_rows)(const ForwardArgs&, int64_t, int64_t);
  void (*backward_block)(const BackwardArgs&, int64_t);
  void (*sum_partials)(const float*, int64_t, int64_t, float*, int64_t, int64_t);
};

const Variant& variant() {
  static const Variant v = [] {
#if defined(__x86_64__)
    const std::string& isa = cpu_info().isa;
    if (isa == "avx512") return Variant{forward_rows_avx512, backward_block_avx512, sum_partials_avx512};
    if (isa == "avx2") return Variant{forward_rows_avx2, backward_block_avx2, sum_partials_avx2};
#endif
    return Variant{forward_rows_generic, backward_block_generic, sum_partials_generic};
  }();
  return v;
}

void column_totals(const float* partials, int64_t blocks, int64_t cols, float* dst) {
  ThreadPool::global().parallel_for(
      cols, 1024, [&](int64_t j0, int64_t j1) { variant().sum_partials(partials, blocks, cols, dst, j0, j1); });
}

}  // namespace

void norm_forward(const NormShape& s, const void* x, const void* weight, const void* bias, void* y, float* mean,
                  float* rstd) {
  const ForwardArgs a{s,
                      static_cast<const float*>(x),
                      static_cast<const float*>(weight),
                      static_cast<const float*>(bias),
                      static_cast<float*>(y),
                      mean,
                      rstd};
  ThreadPool::global().parallel_for(s.rows, std::max<int64_t>(1, 16384 / s.cols),
                                    [&](int64_t t0, int64_t t1) { variant().forward_rows(a, t0, t1); });
}

void norm_backward(const NormShape& s, const void* x, const void* weight, const float* mean, const float* rstd,
                   const void* dy, void* dx, void* d_weight, void* d_bias, float* workspace) {
  const BackwardArgs a{s,    static_cast<const float*>(x),  static_cast<const float*>(weight), mean,
                       rstd, static_cast<const float*>(dy), static_cast<float*>(dx),           workspace};
  const int64_t blocks = norm_partial_blocks(s.rows);
  ThreadPool::global().parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) variant().backward_block(a, blk);
  });
  column_totals(workspace, blocks, s.cols, static_cast<float*>(d_weight));
  if (mean) column_totals(workspace + blocks * s.cols, blocks, s.cols, static_cast<float*>(d_bias));
}

}  // namespace r1v::cpu

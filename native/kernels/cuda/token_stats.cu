// CUDA tokenStats: one block per row folds a logits chunk into the row's running softmax
// statistics in a single read (16-byte loads, online max/sum/moment per thread, then a block
// merge); the gradient pass reads the chunk once more and writes dLogits. Both are memory
// bound; statistics are f32 whatever the logits dtype.
#include <cuda_runtime.h>

#include <cstdint>

#include "../../core/device_error.h"
#include "../token_stats.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;

// Running statistics of the values u seen: m = max u, s = Σ e^{u−m}, a = Σ e^{u−m}·(u − m).
// s == 0 means nothing seen (or only −inf); NaN anywhere ends up in s.
struct OnlineStats {
  float m, s, a;
};

template <int K>
__device__ __forceinline__ void add_values(OnlineStats& st, const float (&u)[K]) {
  float local_max = u[0];
#pragma unroll
  for (int k = 1; k < K; ++k) local_max = fmaxf(local_max, u[k]);
  if (local_max > st.m) {  // rescale to the new max (s > 0 guards 0·−inf while empty)
    float f = __expf(st.m - local_max);
    st.a = st.s > 0.f ? f * (st.a + st.s * (st.m - local_max)) : 0.f;
    st.s *= f;
    st.m = local_max;
  }
#pragma unroll
  for (int k = 0; k < K; ++k) {
    if (u[k] != -INFINITY) {  // a masked logit adds nothing (NaN does go in)
      float d = u[k] - st.m;
      float e = __expf(d);
      st.s += e;
      st.a = fmaf(e, d, st.a);
    }
  }
}

__device__ __forceinline__ void merge(OnlineStats& x, const OnlineStats& y) {
  if (y.s == 0.f) return;
  if (x.s == 0.f) {
    x = y;
    return;
  }
  float m = fmaxf(x.m, y.m);
  float f1 = __expf(x.m - m), f2 = __expf(y.m - m);
  x.a = f1 * (x.a + x.s * (x.m - m)) + f2 * (y.a + y.s * (y.m - m));
  x.s = x.s * f1 + y.s * f2;
  x.m = m;
}

// Merge over the block; the result is valid in thread 0.
__device__ OnlineStats block_merge(OnlineStats st) {
  __shared__ OnlineStats partial[kThreads / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    OnlineStats other{__shfl_xor_sync(0xffffffffu, st.m, offset), __shfl_xor_sync(0xffffffffu, st.s, offset),
                      __shfl_xor_sync(0xffffffffu, st.a, offset)};
    merge(st, other);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) partial[warp] = st;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) merge(st, partial[w]);
  }
  return st;
}

// 16-byte vectors of T, converted to f32 and scaled.
template <typename T>
struct Vec16 {
  static constexpr int kCount = 16 / sizeof(T);
  __device__ static void load(const T* p, float scale, float (&out)[kCount]) {
    uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int k = 0; k < kCount; ++k) out[k] = to_float(v[k]) * scale;
  }
  __device__ static void store(T* p, const float (&in)[kCount]) {
    uint4 raw;
    T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int k = 0; k < kCount; ++k) v[k] = from_float<T>(in[k]);
    *reinterpret_cast<uint4*>(p) = raw;
  }
};

// Elements before the first 16-byte boundary of p (at most n).
template <typename T>
__device__ __forceinline__ int64_t unaligned_head(const T* p, int64_t n) {
  constexpr int kCount = 16 / sizeof(T);
  int64_t head = (kCount - static_cast<int64_t>((reinterpret_cast<uintptr_t>(p) % 16) / sizeof(T))) % kCount;
  return head < n ? head : n;
}

__device__ __forceinline__ bool target_outside(int32_t t, int64_t vocab) { return t < 0 || t >= vocab; }

__device__ __forceinline__ void report_bad_target(int* error_word) {
  atomicCAS(error_word, kDeviceErrorNone, kDeviceErrorTargetOutOfRange);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    fold_kernel(const T* __restrict__ logits, int64_t cols, int64_t col0, const int32_t* __restrict__ targets,
                float inv_t, RowStats stats) {
  using V = Vec16<T>;
  const int64_t r = blockIdx.x;
  const T* row = logits + r * cols;
  OnlineStats st{-INFINITY, 0.f, 0.f};
  const int64_t head = unaligned_head(row, cols);
  const int64_t vectors = (cols - head) / V::kCount;
  for (int64_t j = threadIdx.x; j < head; j += kThreads) {
    float u[1] = {to_float(row[j]) * inv_t};
    add_values(st, u);
  }
  // Two loads in flight per thread before the dependent exp/sum chain.
  int64_t i = threadIdx.x;
  for (; i + kThreads < vectors; i += 2 * kThreads) {
    float u0[V::kCount], u1[V::kCount];
    V::load(row + head + i * V::kCount, inv_t, u0);
    V::load(row + head + (i + kThreads) * V::kCount, inv_t, u1);
    add_values(st, u0);
    add_values(st, u1);
  }
  if (i < vectors) {
    float u[V::kCount];
    V::load(row + head + i * V::kCount, inv_t, u);
    add_values(st, u);
  }
  for (int64_t j = head + vectors * V::kCount + threadIdx.x; j < cols; j += kThreads) {
    float u[1] = {to_float(row[j]) * inv_t};
    add_values(st, u);
  }
  st = block_merge(st);
  if (threadIdx.x != 0) return;
  if (col0 == 0) {
    stats.max[r] = -INFINITY;
    stats.sum[r] = 0.f;
    stats.moment[r] = 0.f;
    stats.target_logit[r] = __int_as_float(0x7fc00000);  // NaN until the target's chunk
  }
  const int64_t t = static_cast<int64_t>(targets[r]) - col0;
  if (t >= 0 && t < cols) stats.target_logit[r] = to_float(row[t]) * inv_t;
  OnlineStats total{stats.max[r], stats.sum[r], stats.moment[r]};
  merge(total, st);
  stats.max[r] = total.m;
  stats.sum[r] = total.s;
  stats.moment[r] = total.a;
}

__global__ void finish_kernel(int64_t rows, RowStats stats, const int32_t* __restrict__ targets, int64_t vocab,
                              float* __restrict__ logprobs, float* __restrict__ entropy, int* error_word) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  if (target_outside(targets[r], vocab)) {
    report_bad_target(error_word);
    logprobs[r] = entropy[r] = __int_as_float(0x7fc00000);
    return;
  }
  const float log_sum = logf(stats.sum[r]);
  logprobs[r] = stats.target_logit[r] - (stats.max[r] + log_sum);
  entropy[r] = log_sum - stats.moment[r] / stats.sum[r];
}

// dz = −p·(dl + de·(log p + H)) (+ dl at the target), dl and de already divided by T.
__device__ __forceinline__ float logit_gradient(float u, float lse, float h, float dl, float de) {
  const float log_p = u - lse;
  const float p = __expf(log_p);
  return p == 0.f ? 0.f : -p * fmaf(de, log_p + h, dl);  // masked: 0; NaN stays NaN
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gradient_kernel(const T* logits, int64_t cols, int64_t col0, int64_t vocab, const int32_t* __restrict__ targets,
                    float inv_t, RowStats stats, const float* __restrict__ d_logprobs,
                    const float* __restrict__ d_entropy, T* d_logits, int* error_word) {
  using V = Vec16<T>;
  const int64_t r = blockIdx.x;
  const T* row = logits + r * cols;  // d_logits may alias logits: each element is read, then written
  T* out = d_logits + r * cols;      // by the same thread
  const int32_t target = targets[r];
  if (target_outside(target, vocab)) {
    if (threadIdx.x == 0) report_bad_target(error_word);
    for (int64_t j = threadIdx.x; j < cols; j += kThreads) out[j] = from_float<T>(__int_as_float(0x7fc00000));
    return;
  }
  const float log_sum = logf(stats.sum[r]);
  const float lse = stats.max[r] + log_sum, h = log_sum - stats.moment[r] / stats.sum[r];
  const float dl = d_logprobs[r] * inv_t, de = d_entropy[r] * inv_t;
  const int64_t t = static_cast<int64_t>(target) - col0;

  // Vector path only when input and output rows share their alignment.
  const bool same_phase = reinterpret_cast<uintptr_t>(row) % 16 == reinterpret_cast<uintptr_t>(out) % 16;
  const int64_t head = same_phase ? unaligned_head(row, cols) : cols;
  const int64_t vectors = (cols - head) / V::kCount;
  for (int64_t j = threadIdx.x; j < head; j += kThreads) {
    float g = logit_gradient(to_float(row[j]) * inv_t, lse, h, dl, de);
    out[j] = from_float<T>(j == t ? g + dl : g);
  }
  for (int64_t i = threadIdx.x; i < vectors; i += kThreads) {
    const int64_t j0 = head + i * V::kCount;
    float v[V::kCount];
    V::load(row + j0, inv_t, v);
#pragma unroll
    for (int k = 0; k < V::kCount; ++k) {
      float g = logit_gradient(v[k], lse, h, dl, de);
      v[k] = j0 + k == t ? g + dl : g;
    }
    V::store(out + j0, v);
  }
  for (int64_t j = head + vectors * V::kCount + threadIdx.x; j < cols; j += kThreads) {
    float g = logit_gradient(to_float(row[j]) * inv_t, lse, h, dl, de);
    out[j] = from_float<T>(j == t ? g + dl : g);
  }
}

template <typename Fn>
void with_dtype(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::F32:
      fn(float{});
      break;
    case DType::BF16:
      fn(__nv_bfloat16{});
      break;
    case DType::F16:
      fn(__half{});
      break;
    default:
      fail(ErrorCode::DType, op, ": unsupported logits dtype ", dtype_name(dtype));
  }
}

// One block per row: the grid's x dimension holds at most 2^31 − 1 blocks.
void check_grid_rows(int64_t rows, const char* op) {
  if (rows > 2147483647) fail(ErrorCode::Shape, op, ": ", rows, " rows exceed the CUDA grid (2^31 - 1)");
}

}  // namespace

void token_stats_fold(const LogitsChunk& c, const RowStats& stats, void* stream) {
  if (c.rows == 0) return;
  check_grid_rows(c.rows, "tokenStats");
  with_dtype(c.dtype, "tokenStats", [&](auto tag) {
    using T = decltype(tag);
    fold_kernel<T><<<static_cast<unsigned>(c.rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(c.logits), c.cols, c.col0, c.targets, c.inv_temperature, stats);
  });
  check_launch("token_stats_fold");
}

void token_stats_finish(int64_t rows, const RowStats& stats, const int32_t* targets, int64_t vocab, float* logprobs,
                        float* entropy, int* error_word, void* stream) {
  if (rows == 0) return;
  const unsigned blocks = static_cast<unsigned>((rows + kThreads - 1) / kThreads);
  finish_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(rows, stats, targets, vocab, logprobs,
                                                                            entropy, error_word);
  check_launch("token_stats_finish");
}

void token_stats_gradient(const LogitsChunk& c, const RowStats& stats, const float* d_logprobs,
                          const float* d_entropy, void* d_logits, int* error_word, void* stream) {
  if (c.rows == 0) return;
  check_grid_rows(c.rows, "tokenStatsBackward");
  with_dtype(c.dtype, "tokenStatsBackward", [&](auto tag) {
    using T = decltype(tag);
    gradient_kernel<T><<<static_cast<unsigned>(c.rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(c.logits), c.cols, c.col0, c.vocab, c.targets, c.inv_temperature, stats, d_logprobs,
        d_entropy, static_cast<T*>(d_logits), error_word);
  });
  check_launch("token_stats_gradient");
}

}  // namespace r1v::cuda

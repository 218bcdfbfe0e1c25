// CUDA sampleTokens: one block per row. w_j = exp(u_j − max u) is recomputed from the logits
// in every pass (no [N, V] scratch). Top-k and top-p find their cut value τ by bisection over
// the float bits of w (monotone for w ≥ 0), one block reduction per step; the kept set is
// {w > τ} plus the first r ties at τ by id (see kernels/sample_tokens.h). The draw walks the kept
// set in id order: each thread owns a contiguous id range, and block scans of the tie counts
// and kept masses find the thread whose range holds the target.
#include <cuda_runtime.h>

#include <cstdint>

#include "../../core/device_error.h"
#include "../sample_tokens.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 512;
// Exclusive upper end of the bisections: +inf, above any w (w ≤ 1 up to expf's last ulp).
constexpr uint32_t kInfBits = 0x7F800000u;

__device__ __forceinline__ int block_sum_int(int v, int* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Inclusive prefix sum over the block (Hillis–Steele in shared memory `buf` of blockDim
// entries). Thread t's exclusive prefix is then buf[t − 1] (0 for t = 0), the very value its
// left neighbour holds, so the threads' intervals tile [0, total] with no rounding gaps.
template <typename V>
__device__ void block_inclusive_scan(V v, V* buf) {
  __syncthreads();
  buf[threadIdx.x] = v;
  __syncthreads();
  for (unsigned step = 1; step < blockDim.x; step <<= 1) {
    V add = threadIdx.x >= step ? buf[threadIdx.x - step] : V(0);
    __syncthreads();
    buf[threadIdx.x] += add;
    __syncthreads();
  }
}

template <typename T>
struct Row {
  const T* z;
  const uint32_t* mask;
  int64_t vocab;
  float inv_t, shift;

  __device__ bool banned(int64_t j) const { return mask && (mask[j >> 5] >> (j & 31)) & 1u; }
  // Not contracted into an FMA with the − shift below, so the largest u gives w = 1 exactly.
  __device__ float u(int64_t j) const { return __fmul_rn(to_float(z[j]), inv_t); }
  // 0 for banned tokens; NaN for NaN logits (callers keep only w > 0).
  __device__ float w(int64_t j) const { return banned(j) ? 0.f : expf(u(j) - shift); }
};

// Count and mass of the tokens with w ≥ t (t > 0), over the block.
template <typename T>
__device__ void at_least(const Row<T>& row, float t, int* count, float* mass, float* fscratch, int* iscratch) {
  int c = 0;
  float m = 0.f;
  for (int64_t j = threadIdx.x; j < row.vocab; j += blockDim.x) {
    const float wj = row.w(j);
    if (wj >= t) {
      ++c;
      m += wj;
    }
  }
  *count = block_sum_int(c, iscratch);
  *mass = block_sum(m, fscratch);
}

__device__ __forceinline__ float bits_float(uint32_t b) { return __uint_as_float(b); }

template <typename T>
__global__ void __launch_bounds__(kThreads)
    sample_tokens_kernel(SamplingProblem p, int* __restrict__ error_word) {
  __shared__ float fscratch[32];
  __shared__ int iscratch[32];
  __shared__ float fscan[kThreads];
  __shared__ int iscan[kThreads];
  const int64_t r = blockIdx.x;
  Row<T> row{static_cast<const T*>(p.logits) + r * p.vocab, p.banned_mask, p.vocab, p.inv_temperature, 0.f};

  if (p.inv_temperature == 0.f) {
    // Greedy: the largest non-banned logit, lowest id on ties (ids ascend within a thread).
    float best = -INFINITY;
    int best_id = -1;
    for (int64_t j = threadIdx.x; j < p.vocab; j += blockDim.x) {
      const float zj = to_float(row.z[j]);
      if (zj > best && !row.banned(j)) {
        best = zj;
        best_id = static_cast<int>(j);
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, offset);
      const int oi = __shfl_xor_sync(0xffffffffu, best_id, offset);
      if (oi >= 0 && (best_id < 0 || ob > best || (ob == best && oi < best_id))) {
        best = ob;
        best_id = oi;
      }
    }
    __syncthreads();
    if (threadIdx.x % 32 == 0) {
      fscratch[threadIdx.x / 32] = best;
      iscratch[threadIdx.x / 32] = best_id;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (unsigned wp = 1; wp < blockDim.x / 32; ++wp) {
        const int oi = iscratch[wp];
        const float ob = fscratch[wp];
        if (oi >= 0 && (best_id < 0 || ob > best || (ob == best && oi < best_id))) {
          best = ob;
          best_id = oi;
        }
      }
      p.tokens[r] = best_id;
      if (best_id < 0) atomicCAS(error_word, kDeviceErrorNone, kDeviceErrorNothingToSample);
    }
    return;
  }

  float local_max = -INFINITY;
  for (int64_t j = threadIdx.x; j < p.vocab; j += blockDim.x) {
    if (!row.banned(j)) local_max = fmaxf(local_max, row.u(j));
  }
  const float umax = block_max(local_max, fscratch);
  if (umax == -INFINITY) {  // every token banned, −inf or NaN
    if (threadIdx.x == 0) {
      p.tokens[r] = -1;
      atomicCAS(error_word, kDeviceErrorNone, kDeviceErrorNothingToSample);
    }
    return;
  }
  row.shift = umax;

  // τ and r: the kept set is {w > τ} plus the first `ties` tokens with w == τ (τ = 0: all w > 0).
  float tau = 0.f;
  int ties = 0;
  if (p.top_k > 0 || p.top_p < 1.f) {
    int count;
    float mass;
    at_least(row, bits_float(1u), &count, &mass, fscratch, iscratch);  // all w > 0
    float kept_mass = mass;
    uint32_t lo = 0;  // bits of the k-th largest w; 0 = top-k keeps every w > 0
    int topk_ties = 0;
    if (p.top_k > 0 && count >= p.top_k) {
      // Largest t with count(w ≥ t) ≥ k: pred(lo) holds, pred(hi) does not.
      uint32_t hi = kInfBits;
      lo = 1;
      while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        at_least(row, bits_float(mid), &count, &mass, fscratch, iscratch);
        if (count >= p.top_k) lo = mid; else hi = mid;
      }
      const float vk = bits_float(lo);
      at_least(row, bits_float(lo + 1), &count, &mass, fscratch, iscratch);  // w > v_k
      topk_ties = static_cast<int>(p.top_k) - count;
      kept_mass = mass + topk_ties * vk;
      tau = vk;
      ties = topk_ties;
    }
    if (p.top_p < 1.f) {
      // Largest t ≥ v_k whose top-k mass at or above t reaches topP of the kept mass.
      const float limit = p.top_p * kept_mass;
      uint32_t plo = lo == 0 ? 1 : lo, phi = kInfBits;
      while (phi - plo > 1) {
        const uint32_t mid = plo + (phi - plo) / 2;
        at_least(row, bits_float(mid), &count, &mass, fscratch, iscratch);
        if (mass >= limit) plo = mid; else phi = mid;
      }
      tau = bits_float(plo);
      int gt_count;
      float gt_mass;
      at_least(row, bits_float(plo + 1), &gt_count, &gt_mass, fscratch, iscratch);  // w > τ
      at_least(row, tau, &count, &mass, fscratch, iscratch);                       // w ≥ τ
      const int available = (plo == lo) ? topk_ties : count - gt_count;
      // Ties are kept while the mass before them is < limit; clamp in float (τ may be tiny).
      const float needed = fmaxf(1.f, ceilf((limit - gt_mass) / tau));
      ties = needed < static_cast<float>(available) ? static_cast<int>(needed) : available;
    }
  }

  // Contiguous id ranges per thread: ties at τ before each thread, then kept mass before it.
  const int64_t per = (p.vocab + blockDim.x - 1) / blockDim.x;
  const int64_t j0 = threadIdx.x * per;
  const int64_t j1 = j0 + per < p.vocab ? j0 + per : p.vocab;
  int my_ties = 0;
  if (tau > 0.f) {
    for (int64_t j = j0; j < j1; ++j) my_ties += row.w(j) == tau;
  }
  block_inclusive_scan(my_ties, iscan);
  const int ties_before = threadIdx.x > 0 ? iscan[threadIdx.x - 1] : 0;
  float my_mass = 0.f;
  int rank = ties_before;
  for (int64_t j = j0; j < j1; ++j) {
    const float wj = row.w(j);
    if (wj > tau) my_mass += wj;
    else if (tau > 0.f && wj == tau && rank++ < ties) my_mass += wj;
  }
  block_inclusive_scan(my_mass, fscan);
  const float before = threadIdx.x > 0 ? fscan[threadIdx.x - 1] : 0.f;
  const float total = fscan[blockDim.x - 1];
  const float target = static_cast<float>(sample_uniform(p.seeds[r], static_cast<uint64_t>(p.offsets[r])) * total);
  if (before < target && target <= fscan[threadIdx.x]) {
    float cum = before;
    int chosen = -1;
    rank = ties_before;
    for (int64_t j = j0; j < j1; ++j) {
      const float wj = row.w(j);
      const bool kept = wj > tau || (tau > 0.f && wj == tau && rank++ < ties);
      if (!kept) continue;
      cum += wj;
      chosen = static_cast<int>(j);
      if (cum >= target) break;  // else rounding: the last kept id of the range
    }
    p.tokens[r] = chosen;
  }
}

}  // namespace

void sample_tokens(const SamplingProblem& p, int* error_word, void* stream) {
  if (p.rows == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_float_dtype(p.dtype, "sampleTokens", [&](auto tag) {
    using T = decltype(tag);
    sample_tokens_kernel<T><<<static_cast<unsigned>(p.rows), kThreads, 0, s>>>(p, error_word);
  });
  check_launch("sampleTokens");
}

}  // namespace r1v::cuda

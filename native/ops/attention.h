// attention: softmax(scale·Q·Kᵀ [+ causal mask])·V per head, flash-style (tiled, online
// softmax; no Sq×Sk matrix in memory), with GQA and variable-length (packed) batches.
//   dense:  q [B, Sq, Hq, D], k/v [B, Sk, Hkv, D] → out like q, lse f32 [B, Hq, Sq]
//   packed: q [Tq, Hq, D], k/v [Tk, Hkv, D], cu_seqlens_q/k [B+1] → out like q, lse f32 [Hq, Tq]
// Query head h reads kv head h / (Hq / Hkv). causal with Sq < Sk aligns to the end: query i
// of a sequence sees keys j ≤ i + Sk − Sq (KV-cache decode). A query that sees no key (only
// possible when causal and Sq > Sk) gets out = 0 and lse = −inf, and no gradient.
// lse is the natural log of Σ_j exp(scale·q·k_j) over the keys the query sees.
// KV cache (packed layout, forward only): with seq_used_k, sequence b uses only the first
// seq_used_k[b] rows of its key slot [cu_k[b], cu_k[b+1]) and Sk = seq_used_k[b] everywhere
// above (flash-attn's seqused_k); the rest of the slot is never read.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "../core/tensor.h"

namespace r1v {

struct AttentionOptions {
  bool causal = false;
  std::optional<float> scale;                      // default 1/sqrt(D)
  std::optional<std::vector<int32_t>> cu_seqlens_q;  // packed layout when given (with cu_seqlens_k)
  std::optional<std::vector<int32_t>> cu_seqlens_k;
  std::optional<std::vector<int32_t>> seq_used_k;  // [B], packed layout, forward only
};

struct AttentionResult {
  Tensor out, lse;
};

struct AttentionGradients {
  Tensor dq, dk, dv;
};

// Validate (shapes, dtypes, engines, GQA, cu_seqlens monotone and matching the row
// counts, seq_used_k within the slots, D ≤ 256 and divisible by 8), allocate and enqueue.
AttentionResult attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options);
AttentionGradients attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                      const Tensor& lse, const Tensor& d_out, const AttentionOptions& options);

// The problem as the kernels see it. Both layouts are described by cumulative sequence
// offsets: sequence b owns query rows [cu_q[b], cu_q[b+1]) and key rows [cu_k[b], cu_k[b+1])
// of q [rows_q, Hq, D] and k/v [rows_k, Hkv, D] (a dense batch has cu[b] = b·S).
// Element (row r, head h, dim d) of q is at q + (r·Hq + h)·D + d; likewise k, v, out, d_*.
// lse of (b, h, i) is at lse + b·lse_stride_b + h·lse_stride_h + (lse_packed ? cu_q[b] : 0) + i.
// used_k (forward only; null = whole slots): sequence b's keys are rows
// [cu_k[b], cu_k[b] + used_k[b]) and its Sk is used_k[b]; max_seqlen_k is the longest of those.
struct AttentionProblem {
  DType dtype = DType::F32;  // of q, k, v, out, d_out, dq, dk, dv; lse and delta are f32
  int64_t batch = 0, heads_q = 0, heads_kv = 0, head_dim = 0;
  int64_t rows_q = 0, rows_k = 0;
  int64_t max_seqlen_q = 0, max_seqlen_k = 0;
  // CPU: host arrays. CUDA: device arrays (the op copies them to the device).
  const int32_t* cu_q = nullptr;
  const int32_t* cu_k = nullptr;
  const int32_t* used_k = nullptr;
  bool causal = false;
  float scale = 1.f;
  int64_t lse_stride_b = 0, lse_stride_h = 0;
  bool lse_packed = false;

  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;  // forward writes; backward reads
  float* lse = nullptr;
  // backward only
  const void* d_out = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  // backward scratch: f32, one per (query row, head), laid out like lse; the kernels may use
  // it for δ = rowsum(dO ∘ O). Allocated by the op from the engine's allocator.
  float* delta = nullptr;
};

namespace cpu {
void attention_forward(const AttentionProblem& p);   // f32
void attention_backward(const AttentionProblem& p);  // f32; overwrites dq, dk, dv
}  // namespace cpu

namespace cuda {
// f32, bf16, f16 with f32 accumulation. `workspace` (f32) holds at least
// attention_backward_workspace_floats(p) elements, allocated by the op.
void attention_forward(const AttentionProblem& p, void* stream);
int64_t attention_backward_workspace_floats(const AttentionProblem& p);
void attention_backward(const AttentionProblem& p, float* workspace, void* stream);
}  // namespace cuda

}  // namespace r1v

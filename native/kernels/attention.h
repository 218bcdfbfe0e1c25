// The attention kernels (op: ops/attention.h): flash-style forward and backward of
// softmax(scale·Q·Kᵀ [+ causal mask])·V per head with GQA, over one problem description that
// covers the dense and the packed (variable-length) layouts and the KV-cache forward.
// CPU: f32; CUDA: f32/bf16/f16 with f32 accumulation.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

// The problem as the kernels see it. Both layouts are described by cumulative sequence
// offsets: sequence b owns query rows [cu_q[b], cu_q[b+1]) and key rows [cu_k[b], cu_k[b+1])
// of q [rows_q, Hq, D] and k/v [rows_k, Hkv, D] (a dense batch has cu[b] = b·S).
// Element (row r, head h, dim d) of q is at q + (r·Hq + h)·D + d; likewise k, v, out, d_*.
// Query head h reads kv head h / (Hq / Hkv). causal with Sq < Sk aligns to the end: query i
// of a sequence sees keys j ≤ i + Sk − Sq. A query that sees no key gets out = 0, lse = −inf.
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

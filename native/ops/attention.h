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

}  // namespace r1v

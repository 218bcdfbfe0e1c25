// linearTokenStats: the tokenStats of logits = hidden·weightᵀ (the LM head) without ever
// storing the [N, V] logits. The vocabulary is walked in chunks of `chunk` columns: each
// chunk's logits [N, chunk] are computed with run_gemm into scratch and folded into per-row
// running statistics (token_stats.h), so the extra memory is O(N·chunk).
//   forward:  hidden [N, Hd], weight [V, Hd], targets i32 [N] → logprobs, entropy f32 [N]
//   backward: dLogprobs, dEntropy f32 [N] → dHidden [N, Hd], dWeight [V, Hd] (input dtype).
//             A first pass rebuilds the statistics; then per chunk the logits are recomputed,
//             turned into dZ in place, and dHidden += dZ·W_chunk, dW_chunk = dZᵀ·hidden
//             (each chunk's dWeight rows are written once).
// CPU: f32. CUDA: f32, bf16, f16 (statistics in f32; the chunk logits are rounded to the
// input dtype, as a materialised matmul would be; 16-bit dHidden is summed over chunks in f32).
#pragma once
#include <cstdint>
#include <optional>

#include "../core/tensor.h"
#include "token_stats.h"

namespace r1v {

// Vocab columns per step when the caller gives none: the CPU GEMM is efficient from a few
// thousand columns on; a GPU needs wider chunks (N·chunk elements) to fill its SMs.
constexpr int64_t kCpuTokenStatsChunk = 4096;
constexpr int64_t kCudaTokenStatsChunk = 8192;

struct LinearTokenStatsOptions {
  float temperature = 1.f;      // finite, > 0
  std::optional<int64_t> chunk;  // ≥ 1; default by device (above)
};

struct LinearTokenStatsGradients {
  Tensor d_hidden, d_weight;
};

// Validate (shapes, dtypes, engines, temperature, chunk), allocate and enqueue.
TokenStatsResult linear_token_stats(const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                                    const LinearTokenStatsOptions& options);
LinearTokenStatsGradients linear_token_stats_backward(const Tensor& hidden, const Tensor& weight,
                                                      const Tensor& targets, const Tensor& d_logprobs,
                                                      const Tensor& d_entropy, const LinearTokenStatsOptions& options);

}  // namespace r1v

// The tokenStats kernels (ops: tokenStats in ops/token_stats.h, linearTokenStats in
// ops/linear_token_stats.h, and sampleTokens' logprobs/entropy). They see the logits in vocab
// chunks (the whole row is one chunk for tokenStats; linearTokenStats feeds chunks of
// hidden·weightᵀ) and keep per-row running statistics of u = logits / T over the columns seen
// so far:
//   max = max u,  sum = Σ e^{u−max},  moment = Σ e^{u−max}·(u − max)  (≤ 0: no cancellation)
// so that log Σ e^u = max + log sum and H = log sum − moment / sum. With p = softmax(u):
//   logprob = u[target] − log Σ e^u,  entropy = H,
//   dz_j = (dLogp·(1[j=t] − p_j) − dEnt·p_j·(log p_j + H)) / T.
// A row whose logits are all −inf has no distribution: its statistics are NaN.
// CPU: f32 (targets checked by the op); CUDA: f32/bf16/f16 with f32 statistics, targets
// checked in the kernels.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

// Columns [col0, col0 + cols) of the [rows, vocab] logits, stored densely as [rows, cols].
struct LogitsChunk {
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0, col0 = 0, vocab = 0;
  const void* logits = nullptr;
  const int32_t* targets = nullptr;  // [rows]
  float inv_temperature = 1.f;
};

// Per-row running statistics, f32 [rows] each (see above); target_logit holds u[target].
struct RowStats {
  float* max = nullptr;
  float* sum = nullptr;
  float* moment = nullptr;
  float* target_logit = nullptr;
};

namespace cpu {
// f32. Folds the chunk into `stats` (col0 == 0 starts them afresh). scratch: f32, at least
// ThreadPool::global().num_threads() · cols elements.
void token_stats_fold(const LogitsChunk& chunk, const RowStats& stats, float* scratch);
// logprobs/entropy [rows] from the statistics of all columns. Targets were checked.
void token_stats_finish(int64_t rows, const RowStats& stats, float* logprobs, float* entropy);
// d_logits [rows, cols] (may alias chunk.logits) from the complete statistics. scratch as
// for token_stats_fold.
void token_stats_gradient(const LogitsChunk& chunk, const RowStats& stats, const float* d_logprobs,
                          const float* d_entropy, float* d_logits, float* scratch);
}  // namespace cpu

namespace cuda {
// f32, bf16, f16 logits; statistics in f32. Same contracts as the CPU functions, except that
// targets are checked here: a target outside [0, vocab) sets kDeviceErrorTargetOutOfRange in
// error_word (device int) and makes that row's outputs NaN. stream is a cudaStream_t.
void token_stats_fold(const LogitsChunk& chunk, const RowStats& stats, void* stream);
void token_stats_finish(int64_t rows, const RowStats& stats, const int32_t* targets, int64_t vocab,
                        float* logprobs, float* entropy, int* error_word, void* stream);
// d_logits in the chunk's dtype; may alias chunk.logits.
void token_stats_gradient(const LogitsChunk& chunk, const RowStats& stats, const float* d_logprobs,
                          const float* d_entropy, void* d_logits, int* error_word, void* stream);
}  // namespace cuda

}  // namespace r1v

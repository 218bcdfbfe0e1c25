// tokenStats: per-token statistics of softmax(logits / T), the quantities RL losses are
// built from, and their backward from per-token coefficients.
//   forward:  logits [N, V], targets i32 [N] → logprobs f32 [N] = log p[target],
//             entropy f32 [N] = −Σ p log p (always computed in f32)
//   backward: dLogprobs, dEntropy f32 [N] → dLogits [N, V] in the logits' dtype, with
//             u = z/T, p = softmax(u), H = −Σ p log p:
//             dz_j = (dLogp·(1[j=t] − p_j) − dEnt·p_j·(log p_j + H)) / T
// A target outside [0, V) is found inside the work: the CPU raises Error(Argument) naming
// the first bad index; CUDA kernels set kDeviceErrorTargetOutOfRange and write NaN.
// A row whose logits are all −inf has no distribution: its statistics are NaN.
//
// The kernels see the logits in vocab chunks (the whole row is one chunk for tokenStats;
// linearTokenStats, in linear_token_stats.h, feeds chunks of hidden·weightᵀ) and keep
// per-row running statistics of u over the columns seen so far:
//   max = max u,  sum = Σ e^{u−max},  moment = Σ e^{u−max}·(u − max)  (≤ 0: no cancellation)
// so that log Σ e^u = max + log sum and H = log sum − moment / sum.
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

struct TokenStatsOptions {
  float temperature = 1.f;  // finite, > 0
};

struct TokenStatsResult {
  Tensor logprobs, entropy;
};

// Validate (shapes, dtypes, engines, temperature), allocate and enqueue.
TokenStatsResult token_stats(const Tensor& logits, const Tensor& targets, const TokenStatsOptions& options);
Tensor token_stats_backward(const Tensor& logits, const Tensor& targets, const Tensor& d_logprobs,
                            const Tensor& d_entropy, const TokenStatsOptions& options);

// Shared by both ops: the checks of targets [N] (i32, engine of `ref`) and of the temperature.
void check_token_targets(const char* op, const Tensor& targets, int64_t rows, const Tensor& ref,
                         const char* ref_name);
void check_temperature(const char* op, float temperature);
// CPU, inside the work: Error(Argument) naming the first target outside [0, vocab).
void check_targets_in_range(const char* op, const int32_t* targets, int64_t rows, int64_t vocab);

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

// The four rows of an f32 [4, rows] tensor, as RowStats.
RowStats row_stats_in(const Tensor& stats);

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

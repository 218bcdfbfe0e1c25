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
// The kernels (kernels/token_stats.h) fold the logits in vocab chunks into per-row running
// statistics, which linearTokenStats shares.
#pragma once
#include <cstdint>

#include "../core/tensor.h"
#include "../kernels/token_stats.h"

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

// The four rows of an f32 [4, rows] tensor, as RowStats.
RowStats row_stats_in(const Tensor& stats);

}  // namespace r1v

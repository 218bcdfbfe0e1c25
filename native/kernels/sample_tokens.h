// The sampleTokens kernels (op: ops/sample_tokens.h): one token per row of logits [rows, vocab]
// drawn from softmax(logits · inv_temperature) after banning, top-k and top-p, with the row's
// uniform from Philox4x32-10 keyed by its (seed, offset). The kept set is {w > τ} plus the
// first r tokens (by id) with w == τ; the token is the first one, in a fixed order over the kept
// set (CUDA: by id; CPU: see its kernel), whose cumulative mass reaches uniform·(kept mass).
// inv_temperature 0 is greedy: the largest non-banned logit, lowest id on ties.
// CPU: f32; CUDA: f32/bf16/f16.
#pragma once
#include <cstdint>

#include "../core/dtype.h"
#include "../core/philox.h"

namespace r1v {

// The kernels' view. banned_mask: bit j % 32 of word j / 32 set for a banned id, or null.
// CPU: host arrays. CUDA: device arrays (the op copies them to the device).
struct SamplingProblem {
  DType dtype = DType::F32;
  int64_t rows = 0, vocab = 0;
  const void* logits = nullptr;
  const uint64_t* seeds = nullptr;
  const int32_t* offsets = nullptr;
  const uint32_t* banned_mask = nullptr;
  float inv_temperature = 1.f;  // 0 = greedy
  int64_t top_k = 0;            // 0 or ≥ V: off
  float top_p = 1.f;
  int32_t* tokens = nullptr;
};

// randn uses counter indices below 2^62, so sampling's draws never coincide with its numbers.
constexpr uint64_t kSampleCounterIndex = 1ull << 63;

// The row's uniform in (0, 1], 53 bits from the first two words of Philox(seed, offset).
R1V_HOST_DEVICE double sample_uniform(uint64_t seed, uint64_t offset) {
  const Philox4 r = philox4x32_10(kSampleCounterIndex, offset, seed);
  const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 21) | (r.v[1] >> 11);
  return (static_cast<double>(bits) + 1.0) * (1.0 / 9007199254740992.0);
}

namespace cpu {
// f32. Writes tokens; a row with nothing to sample gets token −1 (the op raises for it).
// scratch: f32, at least sample_tokens_scratch_floats(vocab) per pool thread.
int64_t sample_tokens_scratch_floats(int64_t vocab);
void sample_tokens(const SamplingProblem& p, float* scratch);
}  // namespace cpu

namespace cuda {
// f32, bf16, f16. A row with nothing to sample: token −1 and kDeviceErrorNothingToSample in
// error_word. stream is a cudaStream_t.
void sample_tokens(const SamplingProblem& p, int* error_word, void* stream);
}  // namespace cuda

}  // namespace r1v

// sampleTokens: one token per row of logits [N, V], drawn from softmax(logits / T) after
// banning, top-k and top-p, with one uniform per row from Philox4x32-10 keyed by the row's
// (seed, offset), so a row's draw does not depend on the batch it is in.
//   w_j = exp(u_j − max u) over non-banned j (u = logits / T; banned w_j = 0);
//   top-k keeps the k largest w (ties → lower id); top-p then keeps the shortest prefix of the
//   remaining tokens by descending w (ties → lower id) whose mass reaches topP of their total
//   (a token is kept while the mass before it is < topP·total, the HF/vLLM rule).
// The kept set is always {w > τ} plus the first r tokens (by id) with w == τ; the token is the
// first one, in a fixed order over the kept set (CUDA: by id; CPU: see its kernel), whose
// cumulative mass reaches uniform·(kept mass). So the two backends draw from the same
// distribution with the same uniforms, but may pick different tokens for one (seed, offset).
// T = 0 is greedy: the largest non-banned logit, lowest id on ties.
// logprobs/entropy are tokenStats of the sampled tokens at temperature T (1 when T = 0): the
// plain softmax over all tokens, before banning and truncation.
// A row with nothing to sample (every token banned or −inf) is found inside the work: the CPU
// raises Error(Argument); CUDA sets kDeviceErrorNothingToSample and writes token −1, NaN stats.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/tensor.h"

namespace r1v {

struct SampleTokensOptions {
  std::vector<uint64_t> seeds;   // one per row
  std::vector<int32_t> offsets;  // one per row, ≥ 0
  float temperature = 1.f;       // ≥ 0, finite; 0 = greedy
  int64_t top_k = 0;             // ≥ 0; 0 = off
  float top_p = 1.f;             // (0, 1]; 1 = off
  std::vector<int32_t> banned;   // ids in [0, V), never sampled
};

struct SampleTokensResult {
  Tensor tokens, logprobs, entropy;  // i32 [N], f32 [N], f32 [N]
};

// Validate (shapes, dtypes, lengths, ranges), allocate and enqueue.
SampleTokensResult sample_tokens(const Tensor& logits, const SampleTokensOptions& options);

}  // namespace r1v

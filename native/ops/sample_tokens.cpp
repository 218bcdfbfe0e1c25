#include "sample_tokens.h"

#include <cmath>
#include <memory>

#include "../core/thread_pool.h"
#include "../kernels/sample_tokens.h"
#include "../kernels/token_stats.h"
#include "dispatch.h"
#include "op_checks.h"
#include "token_stats.h"

namespace r1v {

namespace {

constexpr const char* kOp = "sampleTokens";

void check_options(const SampleTokensOptions& o, int64_t rows, int64_t vocab) {
  if (static_cast<int64_t>(o.seeds.size()) != rows)
    fail(ErrorCode::Argument, kOp, ": seeds has ", o.seeds.size(), " entries but logits has ", rows, " rows");
  if (static_cast<int64_t>(o.offsets.size()) != rows)
    fail(ErrorCode::Argument, kOp, ": offsets has ", o.offsets.size(), " entries but logits has ", rows, " rows");
  for (size_t i = 0; i < o.offsets.size(); ++i) {
    if (o.offsets[i] < 0) fail(ErrorCode::Argument, kOp, ": offsets[", i, "] = ", o.offsets[i], " is negative");
  }
  if (!(o.temperature >= 0.f) || !std::isfinite(o.temperature) ||
      (o.temperature > 0.f && !std::isfinite(1.f / o.temperature)))
    fail(ErrorCode::Argument, kOp, ": temperature must be a finite number ≥ 0 (0 = greedy), got ", o.temperature);
  if (o.top_k < 0) fail(ErrorCode::Argument, kOp, ": topK must be an integer ≥ 0 (0 = off), got ", o.top_k);
  if (!(o.top_p > 0.f && o.top_p <= 1.f))
    fail(ErrorCode::Argument, kOp, ": topP must be in (0, 1] (1 = off), got ", o.top_p);
  for (size_t i = 0; i < o.banned.size(); ++i) {
    if (o.banned[i] < 0 || o.banned[i] >= vocab)
      fail(ErrorCode::Argument, kOp, ": bannedTokenIds[", i, "] = ", o.banned[i], " is outside [0, ", vocab, ")");
  }
}

std::vector<uint32_t> banned_mask(const std::vector<int32_t>& banned, int64_t vocab) {
  std::vector<uint32_t> mask(static_cast<size_t>((vocab + 31) / 32), 0u);
  for (int32_t id : banned) mask[static_cast<size_t>(id) / 32] |= 1u << (id % 32);
  return mask;
}

}  // namespace

SampleTokensResult sample_tokens(const Tensor& logits, const SampleTokensOptions& options) {
  check_live(kOp, logits, "logits");
  check_compute_dtype(kOp, logits, "logits");
  check_ndim(kOp, logits, "logits", 2, "[N, V]");
  const int64_t rows = logits.dim(0), vocab = logits.dim(1);
  if (vocab == 0) fail(ErrorCode::Shape, kOp, ": logits has no columns (V = 0): there is nothing to sample");
  if (vocab > INT32_MAX) fail(ErrorCode::Shape, kOp, ": V = ", vocab, " does not fit token ids in i32");
  check_options(options, rows, vocab);

  auto ctx = logits.context();
  SampleTokensResult out{Tensor::empty(ctx, {rows}, DType::I32), Tensor::empty(ctx, {rows}, DType::F32),
                         Tensor::empty(ctx, {rows}, DType::F32)};
  SamplingProblem p;
  p.dtype = logits.dtype();
  p.rows = rows;
  p.vocab = vocab;
  p.inv_temperature = options.temperature > 0.f ? 1.f / options.temperature : 0.f;
  p.top_k = options.top_k >= vocab ? 0 : options.top_k;
  p.top_p = options.top_p;
  // Host arrays on the CPU; stream-ordered device copies on CUDA.
  auto seeds = std::make_shared<const std::vector<uint64_t>>(options.seeds);
  auto offsets = std::make_shared<const std::vector<int32_t>>(options.offsets);
  auto mask = std::make_shared<const std::vector<uint32_t>>(
      options.banned.empty() ? std::vector<uint32_t>() : banned_mask(options.banned, vocab));
  Tensor seeds_dev, offsets_dev, mask_dev;
  if (logits.device().is_cuda() && rows > 0) {
    // The u64 seeds travel as pairs of i32 words (same bytes).
    seeds_dev = tensor_from_host(ctx, {2 * rows}, DType::I32, seeds->data(), HostType::I32, 2 * rows);
    offsets_dev = tensor_from_host(ctx, {rows}, DType::I32, offsets->data(), HostType::I32, rows);
    if (!mask->empty()) {
      auto n = static_cast<int64_t>(mask->size());
      mask_dev = tensor_from_host(ctx, {n}, DType::I32, mask->data(), HostType::I32, n);
    }
  }
  const float stats_temperature = options.temperature > 0.f ? options.temperature : 1.f;
  enqueue_op(ctx, {logits}, {out.tokens, out.logprobs, out.entropy},
             [logits, out, p, seeds, offsets, mask, seeds_dev, offsets_dev, mask_dev, stats_temperature]() mutable {
    if (p.rows == 0) return;
    const auto& ctx = logits.context();
    p.logits = logits.data();
    p.tokens = static_cast<int32_t*>(out.tokens.data());
    LogitsChunk chunk;
    chunk.dtype = p.dtype;
    chunk.rows = p.rows;
    chunk.cols = chunk.vocab = p.vocab;
    chunk.logits = p.logits;
    chunk.targets = p.tokens;
    chunk.inv_temperature = 1.f / stats_temperature;
    Tensor stats = Tensor::empty(ctx, {4, p.rows}, DType::F32);
    RowStats st = row_stats_in(stats);
    auto* logprobs = static_cast<float*>(out.logprobs.data());
    auto* entropy = static_cast<float*>(out.entropy.data());
    on_device(
        *ctx, kOp,
        [&] {
          p.seeds = seeds->data();
          p.offsets = offsets->data();
          p.banned_mask = mask->empty() ? nullptr : mask->data();
          const int64_t per_thread = cpu::sample_tokens_scratch_floats(p.vocab);
          Tensor scratch = Tensor::empty(ctx, {ThreadPool::global().num_threads(), per_thread}, DType::F32);
          auto* scratch_data = static_cast<float*>(scratch.data());
          cpu::sample_tokens(p, scratch_data);
          for (int64_t r = 0; r < p.rows; ++r) {
            if (p.tokens[r] < 0)
              fail(ErrorCode::Argument, kOp, ": row ", r,
                   " has nothing to sample (every token is banned, or its logits are −inf or NaN)");
          }
          cpu::token_stats_fold(chunk, st, scratch_data);  // needs vocab floats per thread: scratch has more
          cpu::token_stats_finish(p.rows, st, logprobs, entropy);
        },
        [&](Stream& s) {
          p.seeds = static_cast<const uint64_t*>(seeds_dev.data());
          p.offsets = static_cast<const int32_t*>(offsets_dev.data());
          p.banned_mask = mask_dev.defined() ? static_cast<const uint32_t*>(mask_dev.data()) : nullptr;
          cuda::sample_tokens(p, s.device_error_word(), s.cuda_stream());
          // A −1 token (nothing to sample) already set the error word, which keeps the first code.
          cuda::token_stats_fold(chunk, st, s.cuda_stream());
          cuda::token_stats_finish(p.rows, st, p.tokens, p.vocab, logprobs, entropy, s.device_error_word(),
                                   s.cuda_stream());
        });
  });
  return out;
}

}  // namespace r1v

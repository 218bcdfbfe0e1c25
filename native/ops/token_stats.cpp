#include "token_stats.h"

#include <cmath>

#include "../core/thread_pool.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

constexpr const char* kForward = "tokenStats";
constexpr const char* kBackward = "tokenStatsBackward";

// logits [N, V] with V ≥ 1, a float dtype the device computes in.
void check_logits(const char* op, const Tensor& logits) {
  check_live(op, logits, "logits");
  check_compute_dtype(op, logits, "logits");
  check_ndim(op, logits, "logits", 2, "[N, V]");
  if (logits.dim(1) == 0) fail(ErrorCode::Shape, op, ": logits has no columns (V = 0): there is no distribution");
}

void check_row_coefficients(const char* op, const Tensor& t, const char* name, int64_t rows, const Tensor& ref) {
  check_live(op, t, name);
  check_same_engine(op, t, name, ref, "logits");
  check_dtype(op, t, name, DType::F32);
  check_shape(op, t, name, {rows});
}

LogitsChunk whole_rows(const Tensor& logits, const Tensor& targets, float temperature) {
  LogitsChunk c;
  c.dtype = logits.dtype();
  c.rows = logits.dim(0);
  c.cols = c.vocab = logits.dim(1);
  c.logits = logits.data();
  c.targets = static_cast<const int32_t*>(targets.data());
  c.inv_temperature = 1.f / temperature;
  return c;
}

// CPU per-thread row scratch for the fold and gradient passes.
Tensor cpu_row_scratch(const std::shared_ptr<Context>& ctx, int64_t cols) {
  return Tensor::empty(ctx, {ThreadPool::global().num_threads(), cols}, DType::F32);
}

}  // namespace

RowStats row_stats_in(const Tensor& stats) {
  auto* base = static_cast<float*>(stats.data());
  int64_t rows = stats.dim(1);
  return {base, base + rows, base + 2 * rows, base + 3 * rows};
}

void check_token_targets(const char* op, const Tensor& targets, int64_t rows, const Tensor& ref,
                         const char* ref_name) {
  check_live(op, targets, "targets");
  check_same_engine(op, targets, "targets", ref, ref_name);
  check_dtype(op, targets, "targets", DType::I32);
  check_shape(op, targets, "targets", {rows});
}

void check_temperature(const char* op, float temperature) {
  if (!(temperature > 0.f) || !std::isfinite(temperature) || !std::isfinite(1.f / temperature))
    fail(ErrorCode::Argument, op, ": temperature must be a finite number > 0, got ", temperature);
}

void check_targets_in_range(const char* op, const int32_t* targets, int64_t rows, int64_t vocab) {
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] < 0 || targets[r] >= vocab)
      fail(ErrorCode::Argument, op, ": targets[", r, "] = ", targets[r], " is outside [0, ", vocab, ")");
  }
}

TokenStatsResult token_stats(const Tensor& logits, const Tensor& targets, const TokenStatsOptions& options) {
  check_logits(kForward, logits);
  check_token_targets(kForward, targets, logits.dim(0), logits, "logits");
  check_temperature(kForward, options.temperature);

  int64_t rows = logits.dim(0);
  auto ctx = logits.context();
  TokenStatsResult out{Tensor::empty(ctx, {rows}, DType::F32), Tensor::empty(ctx, {rows}, DType::F32)};
  float temperature = options.temperature;
  enqueue_op(ctx, {logits, targets}, {out.logprobs, out.entropy}, [logits, targets, out, temperature] {
    if (logits.dim(0) == 0) return;
    const auto& ctx = logits.context();
    LogitsChunk chunk = whole_rows(logits, targets, temperature);
    Tensor stats = Tensor::empty(ctx, {4, chunk.rows}, DType::F32);
    RowStats st = row_stats_in(stats);
    auto* logprobs = static_cast<float*>(out.logprobs.data());
    auto* entropy = static_cast<float*>(out.entropy.data());
    on_device(
        *ctx, kForward,
        [&] {
          check_targets_in_range(kForward, chunk.targets, chunk.rows, chunk.vocab);
          Tensor scratch = cpu_row_scratch(ctx, chunk.cols);
          cpu::token_stats_fold(chunk, st, static_cast<float*>(scratch.data()));
          cpu::token_stats_finish(chunk.rows, st, logprobs, entropy);
        },
        [&](Stream& s) {
          cuda::token_stats_fold(chunk, st, s.cuda_stream());
          cuda::token_stats_finish(chunk.rows, st, chunk.targets, chunk.vocab, logprobs, entropy, s.device_error_word(),
                                   s.cuda_stream());
        });
  });
  return out;
}

Tensor token_stats_backward(const Tensor& logits, const Tensor& targets, const Tensor& d_logprobs,
                            const Tensor& d_entropy, const TokenStatsOptions& options) {
  check_logits(kBackward, logits);
  int64_t rows = logits.dim(0);
  check_token_targets(kBackward, targets, rows, logits, "logits");
  check_row_coefficients(kBackward, d_logprobs, "dLogprobs", rows, logits);
  check_row_coefficients(kBackward, d_entropy, "dEntropy", rows, logits);
  check_temperature(kBackward, options.temperature);

  auto ctx = logits.context();
  Tensor d_logits = Tensor::empty(ctx, logits.shape(), logits.dtype());
  float temperature = options.temperature;
  enqueue_op(ctx, {logits, targets, d_logprobs, d_entropy}, {d_logits},
             [logits, targets, d_logprobs, d_entropy, d_logits, temperature] {
    if (logits.dim(0) == 0) return;
    const auto& ctx = logits.context();
    LogitsChunk chunk = whole_rows(logits, targets, temperature);
    Tensor stats = Tensor::empty(ctx, {4, chunk.rows}, DType::F32);
    RowStats st = row_stats_in(stats);
    const auto* dl = static_cast<const float*>(d_logprobs.data());
    const auto* de = static_cast<const float*>(d_entropy.data());
    on_device(
        *ctx, kBackward,
        [&] {
          check_targets_in_range(kBackward, chunk.targets, chunk.rows, chunk.vocab);
          Tensor scratch = cpu_row_scratch(ctx, chunk.cols);
          auto* rows_scratch = static_cast<float*>(scratch.data());
          cpu::token_stats_fold(chunk, st, rows_scratch);
          cpu::token_stats_gradient(chunk, st, dl, de, static_cast<float*>(d_logits.data()), rows_scratch);
        },
        [&](Stream& s) {
          cuda::token_stats_fold(chunk, st, s.cuda_stream());
          cuda::token_stats_gradient(chunk, st, dl, de, d_logits.data(), s.device_error_word(), s.cuda_stream());
        });
  });
  return d_logits;
}

}  // namespace r1v

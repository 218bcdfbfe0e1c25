#include "linear_token_stats.h"

#include <algorithm>

#include "../core/thread_pool.h"
#include "../kernels/linear_token_stats.h"
#include "../kernels/token_stats.h"
#include "dispatch.h"
#include "fill.h"
#include "matmul.h"
#include "op_checks.h"

namespace r1v {

namespace {

constexpr const char* kForward = "linearTokenStats";
constexpr const char* kBackward = "linearTokenStatsBackward";

void check_operands(const char* op, const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                    const LinearTokenStatsOptions& options) {
  check_live(op, hidden, "hidden");
  check_compute_dtype(op, hidden, "hidden");
  check_ndim(op, hidden, "hidden", 2, "[N, Hd]");
  check_live(op, weight, "weight");
  check_same_engine(op, weight, "weight", hidden, "hidden");
  check_same_dtype(op, weight, "weight", hidden, "hidden");
  check_ndim(op, weight, "weight", 2, "[V, Hd]");
  if (weight.dim(1) != hidden.dim(1))
    fail(ErrorCode::Shape, op, ": weight ", shape_str(weight.shape()), " and hidden ", shape_str(hidden.shape()),
         " must have the same number of columns (Hd)");
  if (weight.dim(0) == 0) fail(ErrorCode::Shape, op, ": weight has no rows (V = 0): there is no distribution");
  if (hidden.dim(1) == 0) fail(ErrorCode::Shape, op, ": hidden and weight have no columns (Hd = 0)");
  check_token_targets(op, targets, hidden.dim(0), hidden, "hidden");
  check_temperature(op, options.temperature);
  if (options.chunk && *options.chunk < 1)
    fail(ErrorCode::Argument, op, ": chunk must be a positive integer, got ", *options.chunk);
}

void check_row_coefficients(const char* op, const Tensor& t, const char* name, int64_t rows, const Tensor& ref) {
  check_live(op, t, name);
  check_same_engine(op, t, name, ref, "hidden");
  check_dtype(op, t, name, DType::F32);
  check_shape(op, t, name, {rows});
}

// The walk over vocab chunks shared by forward and backward: scratch for one chunk's logits
// and the per-row statistics, and the GEMM that fills the scratch.
class ChunkedLogits {
 public:
  ChunkedLogits(const char* op, const Tensor& hidden, const Tensor& weight, const Tensor& targets, float temperature,
                int64_t chunk)
      : op_(op), hidden_(hidden), weight_(weight), ctx_(hidden.context()) {
    rows_ = hidden.dim(0);
    hd_ = hidden.dim(1);
    vocab_ = weight.dim(0);
    width_ = std::min(chunk, vocab_);
    logits_ = Tensor::empty(ctx_, {rows_, width_}, hidden.dtype());
    stats_tensor_ = Tensor::empty(ctx_, {4, rows_}, DType::F32);
    stats_ = row_stats_in(stats_tensor_);
    if (ctx_->device().is_cpu()) cpu_rows_ = Tensor::empty(ctx_, {ThreadPool::global().num_threads(), width_}, DType::F32);
    base_.dtype = hidden.dtype();
    base_.rows = rows_;
    base_.vocab = vocab_;
    base_.logits = logits_.data();
    base_.targets = static_cast<const int32_t*>(targets.data());
    base_.inv_temperature = 1.f / temperature;
  }

  int64_t vocab() const { return vocab_; }
  int64_t width() const { return width_; }
  const RowStats& stats() const { return stats_; }
  float* cpu_rows() const { return static_cast<float*>(cpu_rows_.data()); }
  void* logits_scratch() const { return logits_.data(); }
  const void* weight_rows(int64_t col0) const {
    return static_cast<const char*>(weight_.data()) + col0 * hd_ * dtype_size(weight_.dtype());
  }

  // Computes logits[:, col0 : col0 + cols] = hidden · weight[col0 : col0 + cols]ᵀ into the scratch.
  LogitsChunk compute(int64_t col0) {
    LogitsChunk c = base_;
    c.col0 = col0;
    c.cols = std::min(width_, vocab_ - col0);
    GemmProblem g;
    g.dtype = hidden_.dtype();
    g.m = rows_;
    g.n = c.cols;
    g.k = hd_;
    g.a = hidden_.data();
    g.lda = hd_;
    g.b = weight_rows(col0);
    g.ldb = hd_;
    g.trans_b = true;
    g.c = logits_.data();
    g.ldc = c.cols;
    run_gemm(*ctx_, g);
    return c;
  }

  // Statistics over the whole vocabulary.
  void fold_all() {
    for (int64_t col0 = 0; col0 < vocab_; col0 += width_) {
      LogitsChunk c = compute(col0);
      on_device(
          *ctx_, op_, [&] { cpu::token_stats_fold(c, stats_, cpu_rows()); },
          [&](Stream& s) { cuda::token_stats_fold(c, stats_, s.cuda_stream()); });
    }
  }

 private:
  const char* op_;
  Tensor hidden_, weight_;
  std::shared_ptr<Context> ctx_;
  int64_t rows_ = 0, hd_ = 0, vocab_ = 0, width_ = 0;
  Tensor logits_, stats_tensor_, cpu_rows_;
  RowStats stats_;
  LogitsChunk base_;
};

int64_t chunk_of(const Tensor& hidden, const LinearTokenStatsOptions& options) {
  if (options.chunk) return *options.chunk;
  return hidden.device().is_cpu() ? kCpuTokenStatsChunk : kCudaTokenStatsChunk;
}

}  // namespace

TokenStatsResult linear_token_stats(const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                                    const LinearTokenStatsOptions& options) {
  check_operands(kForward, hidden, weight, targets, options);
  int64_t rows = hidden.dim(0);
  auto ctx = hidden.context();
  TokenStatsResult out{Tensor::empty(ctx, {rows}, DType::F32), Tensor::empty(ctx, {rows}, DType::F32)};
  float temperature = options.temperature;
  int64_t chunk = chunk_of(hidden, options);
  enqueue_op(ctx, {hidden, weight, targets}, {out.logprobs, out.entropy},
             [hidden, weight, targets, out, temperature, chunk] {
    int64_t rows = hidden.dim(0);
    if (rows == 0) return;
    const auto& ctx = hidden.context();
    auto* logprobs = static_cast<float*>(out.logprobs.data());
    auto* entropy = static_cast<float*>(out.entropy.data());
    const auto* target_ids = static_cast<const int32_t*>(targets.data());
    if (ctx->device().is_cpu()) check_targets_in_range(kForward, target_ids, rows, weight.dim(0));
    ChunkedLogits walk(kForward, hidden, weight, targets, temperature, chunk);
    walk.fold_all();
    on_device(
        *ctx, kForward, [&] { cpu::token_stats_finish(rows, walk.stats(), logprobs, entropy); },
        [&](Stream& s) {
          cuda::token_stats_finish(rows, walk.stats(), target_ids, walk.vocab(), logprobs, entropy,
                                   s.device_error_word(), s.cuda_stream());
        });
  });
  return out;
}

LinearTokenStatsGradients linear_token_stats_backward(const Tensor& hidden, const Tensor& weight,
                                                      const Tensor& targets, const Tensor& d_logprobs,
                                                      const Tensor& d_entropy, const LinearTokenStatsOptions& options) {
  check_operands(kBackward, hidden, weight, targets, options);
  int64_t rows = hidden.dim(0);
  check_row_coefficients(kBackward, d_logprobs, "dLogprobs", rows, hidden);
  check_row_coefficients(kBackward, d_entropy, "dEntropy", rows, hidden);

  auto ctx = hidden.context();
  LinearTokenStatsGradients out{Tensor::empty(ctx, hidden.shape(), hidden.dtype()),
                                Tensor::empty(ctx, weight.shape(), weight.dtype())};
  float temperature = options.temperature;
  int64_t chunk = chunk_of(hidden, options);
  enqueue_op(ctx, {hidden, weight, targets, d_logprobs, d_entropy}, {out.d_hidden, out.d_weight},
             [hidden, weight, targets, d_logprobs, d_entropy, out, temperature, chunk] {
    const auto& ctx = hidden.context();
    bool on_cpu = ctx->device().is_cpu();
    int64_t rows = hidden.dim(0), hd = hidden.dim(1);
    DType dtype = hidden.dtype();
    if (rows == 0) {  // no tokens: the weight gets no gradient
      fill_from_work(kBackward, out.d_weight, 0.0);
      return;
    }
    const auto* target_ids = static_cast<const int32_t*>(targets.data());
    if (on_cpu) check_targets_in_range(kBackward, target_ids, rows, weight.dim(0));
    ChunkedLogits walk(kBackward, hidden, weight, targets, temperature, chunk);
    walk.fold_all();

    // 16-bit dHidden is summed over the chunks in f32 (acc), each chunk's product landing in
    // `product` first; f32 accumulates in place through the GEMM epilogue. Only CUDA computes
    // in 16 bits, so the f32 sums below have no CPU path.
    bool sum_in_f32 = dtype != DType::F32;
    Tensor acc, product;
    if (sum_in_f32) {
      acc = Tensor::empty(ctx, {rows, hd}, DType::F32);
      product = Tensor::empty(ctx, {rows, hd}, dtype);
    }
    const auto* dl = static_cast<const float*>(d_logprobs.data());
    const auto* de = static_cast<const float*>(d_entropy.data());
    for (int64_t col0 = 0; col0 < walk.vocab(); col0 += walk.width()) {
      LogitsChunk c = walk.compute(col0);
      void* dz = walk.logits_scratch();  // the chunk's logits, overwritten by dZ
      on_device(
          *ctx, kBackward,
          [&] { cpu::token_stats_gradient(c, walk.stats(), dl, de, static_cast<float*>(dz), walk.cpu_rows()); },
          [&](Stream& s) {
            cuda::token_stats_gradient(c, walk.stats(), dl, de, dz, s.device_error_word(), s.cuda_stream());
          });
      GemmProblem dh;  // dHidden (+)= dZ · W_chunk
      dh.dtype = dtype;
      dh.m = rows;
      dh.n = hd;
      dh.k = c.cols;
      dh.a = dz;
      dh.lda = c.cols;
      dh.b = walk.weight_rows(col0);
      dh.ldb = hd;
      dh.c = sum_in_f32 ? product.data() : out.d_hidden.data();
      dh.ldc = hd;
      dh.accumulate = !sum_in_f32 && col0 > 0;
      run_gemm(*ctx, dh);
      if (sum_in_f32) {
        on_device(*ctx, kBackward, kNoCpuWork, [&](Stream& s) {
          cuda::accumulate_f32(static_cast<float*>(acc.data()), product.data(), dtype, rows * hd, col0 == 0,
                               s.cuda_stream());
        });
      }
      GemmProblem dw;  // dW_chunk = dZᵀ · hidden
      dw.dtype = dtype;
      dw.m = c.cols;
      dw.n = hd;
      dw.k = rows;
      dw.a = dz;
      dw.lda = c.cols;
      dw.trans_a = true;
      dw.b = hidden.data();
      dw.ldb = hd;
      dw.c = static_cast<char*>(out.d_weight.data()) + col0 * hd * dtype_size(dtype);
      dw.ldc = hd;
      run_gemm(*ctx, dw);
    }
    if (sum_in_f32) {
      on_device(*ctx, kBackward, kNoCpuWork, [&](Stream& s) {
        cuda::store_f32_as(out.d_hidden.data(), dtype, static_cast<const float*>(acc.data()), rows * hd,
                           s.cuda_stream());
      });
    }
  });
  return out;
}

}  // namespace r1v

#include "embedding.h"

#include "../kernels/fill.h"
#include "../kernels/gather_rows.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

void check_ids(const char* op, const Tensor& ids) {
  check_live(op, ids, "ids");
  check_dtype(op, ids, "ids", DType::I32);
  check_ndim(op, ids, "ids", 1, "[T]");
}

}  // namespace

Tensor embedding(const Tensor& ids, const Tensor& table) {
  const char* op = "embedding";
  check_ids(op, ids);
  check_live(op, table, "table");
  check_same_engine(op, table, "table", ids, "ids");
  check_compute_dtype(op, table, "table");
  check_ndim(op, table, "table", 2, "[V, H]");
  if (table.dim(0) == 0) fail(ErrorCode::Shape, op, ": table has no rows (V = 0): no id is valid");
  const int64_t tokens = ids.dim(0), vocab = table.dim(0), hidden = table.dim(1);
  auto ctx = ids.context();
  Tensor out = Tensor::empty(ctx, {tokens, hidden}, table.dtype());
  enqueue_op(ctx, {ids, table}, {out}, [ids, table, out, tokens, vocab, hidden] {
    if (tokens == 0) return;
    const auto* id = static_cast<const int32_t*>(ids.data());
    on_device(
        *out.context(), "embedding",
        [&] {
          cpu::gather_rows("embedding", "ids", id, tokens, table.data(), vocab,
                           hidden * static_cast<int64_t>(sizeof(float)), out.data());
        },
        [&](Stream& s) {
          cuda::gather_rows(table.dtype(), id, tokens, table.data(), vocab, hidden, out.data(), s.device_error_word(),
                            s.cuda_stream());
        });
  });
  return out;
}

Tensor embedding_backward(const Tensor& ids, const Tensor& dy, int64_t vocab) {
  const char* op = "embeddingBackward";
  check_ids(op, ids);
  check_live(op, dy, "dY");
  check_same_engine(op, dy, "dY", ids, "ids");
  check_compute_dtype(op, dy, "dY");
  check_ndim(op, dy, "dY", 2, "[T, H]");
  if (dy.dim(0) != ids.dim(0))
    fail(ErrorCode::Shape, op, ": dY must have one row per id, [", ids.dim(0), ", H], got ", shape_str(dy.shape()));
  if (vocab < 1) fail(ErrorCode::Argument, op, ": V must be ≥ 1, got ", vocab);
  const int64_t tokens = ids.dim(0), hidden = dy.dim(1);
  auto ctx = ids.context();
  Tensor d_table = Tensor::empty(ctx, {vocab, hidden}, dy.dtype());
  enqueue_op(ctx, {ids, dy}, {d_table}, [ids, dy, d_table, tokens, vocab, hidden] {
    Context& c = *d_table.context();
    const auto* id = static_cast<const int32_t*>(ids.data());
    on_device(
        c, "embeddingBackward",
        [&] {
          cpu::scatter_add_rows("embeddingBackward", "ids", id, tokens, static_cast<const float*>(dy.data()), vocab,
                                hidden, static_cast<float*>(d_table.data()));
        },
        [&](Stream& s) {
          Tensor sum =
              dy.dtype() == DType::F32 ? d_table : Tensor::empty(c.shared_from_this(), {vocab, hidden}, DType::F32);
          cuda::fill(sum.data(), DType::F32, sum.numel(), 0.0, s.cuda_stream());
          cuda::scatter_add_rows(dy.dtype(), id, tokens, dy.data(), vocab, hidden, static_cast<float*>(sum.data()),
                                 d_table.data(), s.device_error_word(), s.cuda_stream());
        });
  });
  return d_table;
}

}  // namespace r1v

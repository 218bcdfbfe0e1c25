#include "gather_rows.h"

#include <cstring>

#include "../kernels/cast.h"
#include "../kernels/fill.h"
#include "../kernels/gather_rows.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

void check_idx(const char* op, const Tensor& idx, const Tensor& ref, const char* ref_name) {
  check_live(op, idx, "idx");
  check_same_engine(op, idx, "idx", ref, ref_name);
  check_dtype(op, idx, "idx", DType::I32);
  check_ndim(op, idx, "idx", 1, "[M]");
}

void check_rows_input(const char* op, const Tensor& t, const char* name) {
  check_live(op, t, name);
  if (!is_floating(t.dtype())) fail(ErrorCode::DType, op, ": ", name, " must be a float tensor, got ", dtype_name(t.dtype()));
  if (t.ndim() < 1) fail(ErrorCode::Shape, op, ": ", name, " must have at least one dim [rows, ...], got shape []");
}

// t's shape with the first dim replaced by `rows`.
Shape with_rows(const Tensor& t, int64_t rows) {
  Shape s = t.shape();
  s[0] = rows;
  return s;
}

// Elements per row: the product of the dims after the first (also when there are no rows).
int64_t row_width(const Tensor& t) {
  int64_t w = 1;
  for (int i = 1; i < t.ndim(); ++i) w *= t.dim(i);
  return w;
}

// src must be [M, ...dst's rest] with M = idx's length, dst's dtype and engine.
void check_overwrite(const char* op, const Tensor& dst, const char* dst_name, const Tensor& idx, const Tensor& src) {
  check_rows_input(op, dst, dst_name);
  check_idx(op, idx, dst, dst_name);
  check_live(op, src, "src");
  check_same_engine(op, src, "src", dst, dst_name);
  check_same_dtype(op, src, "src", dst, dst_name);
  check_shape(op, src, "src", with_rows(dst, idx.dim(0)));
}

// Runs on the stream: dst[idx[m]] = src[m] with the range and repeat checks.
void run_write_rows(const char* op, const Tensor& dst, const Tensor& idx, const Tensor& src) {
  const int64_t m = idx.dim(0), n = dst.dim(0), cols = row_width(dst);
  if (m == 0) return;
  const auto* id = static_cast<const int32_t*>(idx.data());
  auto ctx = dst.context();
  on_device(
      *ctx, op,
      [&] {
        Tensor seen = Tensor::empty(ctx, {(n + 3) / 4}, DType::I32);  // n bytes
        cpu::write_rows(op, id, m, src.data(), n, cols * static_cast<int64_t>(dtype_size(dst.dtype())), dst.data(),
                        static_cast<uint8_t*>(seen.data()));
      },
      [&](Stream& s) {
        Tensor owner = Tensor::empty(ctx, {n}, DType::I32);
        cuda::write_rows(dst.dtype(), id, m, src.data(), n, cols, dst.data(), static_cast<int32_t*>(owner.data()),
                         s.device_error_word(), s.cuda_stream());
      });
}

}  // namespace

Tensor gather_rows(const Tensor& x, const Tensor& idx) {
  const char* op = "gatherRows";
  check_rows_input(op, x, "x");
  check_idx(op, idx, x, "x");
  auto ctx = x.context();
  Tensor out = Tensor::empty(ctx, with_rows(x, idx.dim(0)), x.dtype());
  enqueue_op(ctx, {x, idx}, {out}, [x, idx, out, op] {
    const int64_t m = idx.dim(0), n = x.dim(0), cols = row_width(x);
    if (m == 0) return;
    const auto* id = static_cast<const int32_t*>(idx.data());
    on_device(
        *out.context(), op,
        [&] {
          cpu::gather_rows(op, "idx", id, m, x.data(), n, cols * static_cast<int64_t>(dtype_size(x.dtype())),
                           out.data());
        },
        [&](Stream& s) {
          cuda::gather_rows(x.dtype(), id, m, x.data(), n, cols, out.data(), s.device_error_word(), s.cuda_stream());
        });
  });
  return out;
}

Tensor scatter_add_rows(const Tensor& src, const Tensor& idx, int64_t rows) {
  const char* op = "scatterAddRows";
  check_rows_input(op, src, "src");
  check_compute_dtype(op, src, "src");
  check_idx(op, idx, src, "src");
  if (src.dim(0) != idx.dim(0))
    fail(ErrorCode::Shape, op, ": src must have one row per index, [", idx.dim(0), ", ...], got ",
         shape_str(src.shape()));
  if (rows < 0) fail(ErrorCode::Argument, op, ": rows must be ≥ 0, got ", rows);
  auto ctx = src.context();
  Tensor out = Tensor::empty(ctx, with_rows(src, rows), src.dtype());
  enqueue_op(ctx, {src, idx}, {out}, [src, idx, out, rows, op] {
    const int64_t m = idx.dim(0), cols = row_width(src);
    const auto* id = static_cast<const int32_t*>(idx.data());
    Context& c = *out.context();
    on_device(
        c, op,
        [&] {
          cpu::scatter_add_rows(op, "idx", id, m, static_cast<const float*>(src.data()), rows, cols,
                                static_cast<float*>(out.data()));
        },
        [&](Stream& s) {
          Tensor sum = src.dtype() == DType::F32 ? out : Tensor::empty(c.shared_from_this(), out.shape(), DType::F32);
          cuda::fill(sum.data(), DType::F32, sum.numel(), 0.0, s.cuda_stream());
          cuda::scatter_add_rows(src.dtype(), id, m, src.data(), rows, cols, static_cast<float*>(sum.data()),
                                 out.data(), s.device_error_word(), s.cuda_stream());
        });
  });
  return out;
}

Tensor scatter_rows(const Tensor& base, const Tensor& idx, const Tensor& src) {
  const char* op = "scatterRows";
  check_overwrite(op, base, "base", idx, src);
  auto ctx = base.context();
  Tensor out = Tensor::empty(ctx, base.shape(), base.dtype());
  enqueue_op(ctx, {base, idx, src}, {out}, [base, idx, src, out, op] {
    if (out.nbytes() > 0) {
      on_device(
          *out.context(), op, [&] { std::memcpy(out.data(), base.data(), out.nbytes()); },
          [&](Stream& s) { cuda::copy_bytes(op, out.data(), base.data(), out.nbytes(), s.cuda_stream()); });
    }
    run_write_rows(op, out, idx, src);
  });
  return out;
}

void write_rows(const Tensor& dst, const Tensor& idx, const Tensor& src) {
  const char* op = "writeRows";
  check_overwrite(op, dst, "dst", idx, src);
  enqueue_op(dst.context(), {dst, idx, src}, {dst}, [dst, idx, src, op] { run_write_rows(op, dst, idx, src); });
}

}  // namespace r1v

#include "broadcast_arith.h"

#include <cmath>

#include "../kernels/broadcast_arith.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

void check_float_input(const char* op, const Tensor& t, const char* name) {
  check_live(op, t, name);
  check_compute_dtype(op, t, name);
}

void check_operand(const char* op, const Tensor& t, const char* name, const Tensor& ref, const char* ref_name) {
  check_float_input(op, t, name);
  check_same_engine(op, t, name, ref, ref_name);
  check_same_dtype(op, t, name, ref, ref_name);
}

// s must be [C] with C the last dim of x.
void check_channel_scale(const char* op, const Tensor& x, const Tensor& s) {
  if (x.ndim() < 1) fail(ErrorCode::Shape, op, ": x must have at least one dim [..., C], got shape []");
  check_shape(op, s, "s", {x.dim(-1)});
}

int64_t leading_rows(const Tensor& x) {
  int64_t rows = 1;
  for (int i = 0; i + 1 < x.ndim(); ++i) rows *= x.dim(i);
  return rows;
}

// y = a (+ or ·) b broadcast over a's leading dims; b.numel() elements repeat.
Tensor broadcast_binary(const char* name, BroadcastOp op, const Tensor& a, const Tensor& b) {
  auto ctx = a.context();
  Tensor out = Tensor::empty(ctx, a.shape(), a.dtype());
  enqueue_op(ctx, {a, b}, {out}, [name, op, a, b, out] {
    const int64_t n = a.numel(), nb = b.numel();
    if (n == 0) return;
    on_device(
        *out.context(), name,
        [&] {
          cpu::broadcast_binary(op, static_cast<const float*>(a.data()), n, static_cast<const float*>(b.data()), nb,
                                static_cast<float*>(out.data()));
        },
        [&](Stream& s) {
          cuda::broadcast_binary(op, a.dtype(), a.data(), n, b.data(), nb, out.data(), s.cuda_stream());
        });
  });
  return out;
}

// out [C] = Σ_rows x (· w), in out's dtype.
void enqueue_column_sums(const char* name, const Tensor& x, const Tensor& w, const Tensor& out) {
  std::vector<Tensor> inputs{x};
  if (w.defined()) inputs.push_back(w);
  enqueue_op(x.context(), inputs, {out}, [name, x, w, out] {
    const int64_t cols = out.numel(), rows = leading_rows(x);
    if (cols == 0) return;
    on_device(
        *out.context(), name,
        [&] {
          cpu::column_sums(static_cast<const float*>(x.data()),
                           w.defined() ? static_cast<const float*>(w.data()) : nullptr, rows, cols,
                           static_cast<float*>(out.data()));
        },
        [&](Stream& s) {
          Tensor partials = Tensor::empty(out.context(), {cuda::column_sum_chunks(rows), cols}, DType::F32);
          cuda::column_sums(x.dtype(), x.data(), w.defined() ? w.data() : nullptr, rows, cols,
                            static_cast<float*>(partials.data()), out.data(), s.cuda_stream());
        });
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  const char* op = "add";
  check_float_input(op, a, "a");
  check_operand(op, b, "b", a, "a");
  const int offset = a.ndim() - b.ndim();
  bool suffix = offset >= 0;
  for (int i = 0; suffix && i < b.ndim(); ++i) suffix = b.dim(i) == a.dim(offset + i);
  if (!suffix)
    fail(ErrorCode::Shape, op, ": b must have a's shape ", shape_str(a.shape()),
         " or a trailing part of it (broadcast over leading dims), got ", shape_str(b.shape()));
  return broadcast_binary(op, BroadcastOp::Add, a, b);
}

Tensor scale(const Tensor& x, double alpha) {
  const char* op = "scale";
  check_float_input(op, x, "x");
  if (!std::isfinite(alpha)) fail(ErrorCode::Argument, op, ": alpha must be finite, got ", alpha);
  auto ctx = x.context();
  Tensor out = Tensor::empty(ctx, x.shape(), x.dtype());
  const float a = static_cast<float>(alpha);
  enqueue_op(ctx, {x}, {out}, [op, x, out, a] {
    if (x.numel() == 0) return;
    on_device(
        *out.context(), op,
        [&] { cpu::scale(static_cast<const float*>(x.data()), x.numel(), a, static_cast<float*>(out.data())); },
        [&](Stream& s) { cuda::scale(x.dtype(), x.data(), x.numel(), a, out.data(), s.cuda_stream()); });
  });
  return out;
}

Tensor scale_channels(const Tensor& x, const Tensor& s) {
  const char* op = "scaleChannels";
  check_float_input(op, x, "x");
  check_operand(op, s, "s", x, "x");
  check_channel_scale(op, x, s);
  return broadcast_binary(op, BroadcastOp::Mul, x, s);
}

ScaleChannelsGradients scale_channels_backward(const Tensor& x, const Tensor& s, const Tensor& dy) {
  const char* op = "scaleChannelsBackward";
  check_float_input(op, x, "x");
  check_operand(op, s, "s", x, "x");
  check_operand(op, dy, "dY", x, "x");
  check_channel_scale(op, x, s);
  check_shape(op, dy, "dY", x.shape());
  ScaleChannelsGradients g;
  g.dx = broadcast_binary(op, BroadcastOp::Mul, dy, s);
  g.d_scale = Tensor::empty(x.context(), s.shape(), s.dtype());
  enqueue_column_sums(op, dy, x, g.d_scale);
  return g;
}

Tensor sum_rows(const Tensor& x) {
  const char* op = "sumRows";
  check_float_input(op, x, "x");
  if (x.ndim() < 1) fail(ErrorCode::Shape, op, ": x must have at least one dim [..., C], got shape []");
  Tensor out = Tensor::empty(x.context(), {x.dim(-1)}, x.dtype());
  enqueue_column_sums(op, x, Tensor(), out);
  return out;
}

}  // namespace r1v

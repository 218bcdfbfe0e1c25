#include "swiglu.h"

#include "../kernels/swiglu.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

void check_like(const char* op, const Tensor& t, const char* name, const Tensor& gate) {
  check_live(op, t, name);
  check_same_engine(op, t, name, gate, "gate");
  check_same_dtype(op, t, name, gate, "gate");
  if (t.shape() != gate.shape())
    fail(ErrorCode::Shape, op, ": ", name, " must have the shape of gate ", shape_str(gate.shape()), ", got ",
         shape_str(t.shape()));
}

void check_gate(const char* op, const Tensor& gate) {
  check_live(op, gate, "gate");
  check_compute_dtype(op, gate, "gate");
}

}  // namespace

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu";
  check_gate(op, gate);
  check_like(op, up, "up", gate);
  auto ctx = gate.context();
  Tensor y = Tensor::empty(ctx, gate.shape(), gate.dtype());
  enqueue_op(ctx, {gate, up}, {y}, [gate, up, y, op] {
    const int64_t n = y.numel();
    if (n == 0) return;
    on_device(
        *y.context(), op,
        [&] {
          cpu::swiglu(n, static_cast<const float*>(gate.data()), static_cast<const float*>(up.data()),
                      static_cast<float*>(y.data()));
        },
        [&](Stream& s) { cuda::swiglu(y.dtype(), n, gate.data(), up.data(), y.data(), s.cuda_stream()); });
  });
  return y;
}

SwigluGradients swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy) {
  const char* op = "swigluBackward";
  check_gate(op, gate);
  check_like(op, up, "up", gate);
  check_like(op, dy, "dY", gate);
  auto ctx = gate.context();
  SwigluGradients g{Tensor::empty(ctx, gate.shape(), gate.dtype()), Tensor::empty(ctx, gate.shape(), gate.dtype())};
  enqueue_op(ctx, {gate, up, dy}, {g.d_gate, g.d_up}, [gate, up, dy, g, op] {
    const int64_t n = gate.numel();
    if (n == 0) return;
    on_device(
        *gate.context(), op,
        [&] {
          cpu::swiglu_backward(n, static_cast<const float*>(gate.data()), static_cast<const float*>(up.data()),
                               static_cast<const float*>(dy.data()), static_cast<float*>(g.d_gate.data()),
                               static_cast<float*>(g.d_up.data()));
        },
        [&](Stream& s) {
          cuda::swiglu_backward(gate.dtype(), n, gate.data(), up.data(), dy.data(), g.d_gate.data(), g.d_up.data(),
                                s.cuda_stream());
        });
  });
  return g;
}

}  // namespace r1v

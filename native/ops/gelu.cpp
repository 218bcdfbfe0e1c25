#include "gelu.h"

#include "../kernels/gelu.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

Tensor gelu(const Tensor& z) {
  const char* op = "gelu";
  check_live(op, z, "z");
  check_compute_dtype(op, z, "z");
  auto ctx = z.context();
  Tensor y = Tensor::empty(ctx, z.shape(), z.dtype());
  enqueue_op(ctx, {z}, {y}, [z, y, op] {
    const int64_t n = y.numel();
    if (n == 0) return;
    on_device(
        *y.context(), op, [&] { cpu::gelu(n, static_cast<const float*>(z.data()), static_cast<float*>(y.data())); },
        [&](Stream& s) { cuda::gelu(y.dtype(), n, z.data(), y.data(), s.cuda_stream()); });
  });
  return y;
}

Tensor gelu_backward(const Tensor& z, const Tensor& dy) {
  const char* op = "geluBackward";
  check_live(op, z, "z");
  check_compute_dtype(op, z, "z");
  check_live(op, dy, "dY");
  check_same_engine(op, dy, "dY", z, "z");
  check_same_dtype(op, dy, "dY", z, "z");
  if (dy.shape() != z.shape())
    fail(ErrorCode::Shape, op, ": dY must have the shape of z ", shape_str(z.shape()), ", got ", shape_str(dy.shape()));
  auto ctx = z.context();
  Tensor dz = Tensor::empty(ctx, z.shape(), z.dtype());
  enqueue_op(ctx, {z, dy}, {dz}, [z, dy, dz, op] {
    const int64_t n = dz.numel();
    if (n == 0) return;
    on_device(
        *dz.context(), op,
        [&] {
          cpu::gelu_backward(n, static_cast<const float*>(z.data()), static_cast<const float*>(dy.data()),
                             static_cast<float*>(dz.data()));
        },
        [&](Stream& s) { cuda::gelu_backward(dz.dtype(), n, z.data(), dy.data(), dz.data(), s.cuda_stream()); });
  });
  return dz;
}

}  // namespace r1v

#include "gelu.h"

#include "op_checks.h"

namespace r1v {

Tensor gelu(const Tensor& z) {
  const char* op = "gelu";
  check_live(op, z, "z");
  check_compute_dtype(op, z, "z");
  auto ctx = z.context();
  Tensor y = Tensor::empty(ctx, z.shape(), z.dtype());
  enqueue_op(ctx, {z}, {y}, [z, y] {
    const int64_t n = y.numel();
    if (n == 0) return;
    Context& c = *y.context();
    if (c.device().is_cuda()) {
#if R1V_WITH_CUDA
      cuda::gelu(y.dtype(), n, z.data(), y.data(), c.stream().cuda_stream());
#endif
    } else {
      cpu::gelu(n, static_cast<const float*>(z.data()), static_cast<float*>(y.data()));
    }
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
  enqueue_op(ctx, {z, dy}, {dz}, [z, dy, dz] {
    const int64_t n = dz.numel();
    if (n == 0) return;
    Context& c = *dz.context();
    if (c.device().is_cuda()) {
#if R1V_WITH_CUDA
      cuda::gelu_backward(dz.dtype(), n, z.data(), dy.data(), dz.data(), c.stream().cuda_stream());
#endif
    } else {
      cpu::gelu_backward(n, static_cast<const float*>(z.data()), static_cast<const float*>(dy.data()),
                         static_cast<float*>(dz.data()));
    }
  });
  return dz;
}

}  // namespace r1v

#include "fill.h"

namespace r1v {

void fill(const Tensor& t, double value) {
  t.check_alive("fill: tensor");
  enqueue_op(t.context(), {}, {t}, [t, value] {
    if (t.device().is_cpu()) {
      cpu::fill(t.data(), t.dtype(), t.numel(), value);
    } else {
#if R1V_WITH_CUDA
      cuda::fill(t.data(), t.dtype(), t.numel(), value, t.context()->stream().cuda_stream());
#endif
    }
  });
}

Tensor full(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype, double value) {
  Tensor t = Tensor::empty(ctx, shape, dtype);
  fill(t, value);
  return t;
}

}  // namespace r1v

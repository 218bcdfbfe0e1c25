#include "fill.h"

#include "../kernels/fill.h"
#include "dispatch.h"

namespace r1v {

void fill(const Tensor& t, double value) {
  t.check_alive("fill: tensor");
  enqueue_op(t.context(), {}, {t}, [t, value] { fill_from_work("fill", t, value); });
}

void fill_from_work(const char* op, const Tensor& t, double value) {
  on_device(
      *t.context(), op, [&] { cpu::fill(t.data(), t.dtype(), t.numel(), value); },
      [&](Stream& s) { cuda::fill(t.data(), t.dtype(), t.numel(), value, s.cuda_stream()); });
}

Tensor full(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype, double value) {
  Tensor t = Tensor::empty(ctx, shape, dtype);
  fill(t, value);
  return t;
}

}  // namespace r1v

#include "randn.h"

#include "../kernels/randn.h"
#include "dispatch.h"

namespace r1v {

Tensor randn(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype, std::optional<uint64_t> seed) {
  if (!is_floating(dtype)) fail(ErrorCode::DType, "randn: dtype must be a float type, got ", dtype_name(dtype));
  Tensor t = Tensor::empty(ctx, shape, dtype);
  uint64_t key = seed ? *seed : ctx->seed();
  // The offset is its own counter word, so one step per call gives every call fresh numbers.
  uint64_t offset = seed ? 0 : ctx->next_rng_offset(1);
  enqueue_op(ctx, {}, {t}, [t, key, offset] {
    on_device(
        *t.context(), "randn", [&] { cpu::randn(t.data(), t.dtype(), t.numel(), key, offset); },
        [&](Stream& s) { cuda::randn(t.data(), t.dtype(), t.numel(), key, offset, s.cuda_stream()); });
  });
  return t;
}

}  // namespace r1v

#include "cast.h"

#include <cstring>

#include "../kernels/cast.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

// out = x converted to out's dtype (a byte copy when the dtypes agree).
Tensor enqueue_convert(const char* op, const Tensor& x, DType dtype) {
  auto ctx = x.context();
  Tensor out = Tensor::empty(ctx, x.shape(), dtype);
  enqueue_op(ctx, {x}, {out}, [x, out, op] {
    if (x.numel() == 0) return;
    const bool same = x.dtype() == out.dtype();
    on_device(
        *out.context(), op,
        [&] {
          if (same) {
            std::memcpy(out.data(), x.data(), out.nbytes());
          } else {
            cpu::cast(x.dtype(), x.data(), x.numel(), out.dtype(), out.data());
          }
        },
        [&](Stream& s) {
          if (same) {
            cuda::copy_bytes(op, out.data(), x.data(), out.nbytes(), s.cuda_stream());
          } else {
            cuda::cast(x.dtype(), x.data(), x.numel(), out.dtype(), out.data(), s.cuda_stream());
          }
        });
  });
  return out;
}

}  // namespace

Tensor cast(const Tensor& x, DType dtype) {
  const char* op = "cast";
  check_live(op, x, "x");
  if (!is_floating(x.dtype())) fail(ErrorCode::DType, op, ": x must be a float tensor, got ", dtype_name(x.dtype()));
  if (!is_floating(dtype)) fail(ErrorCode::DType, op, ": dtype must be f32, bf16 or f16, got ", dtype_name(dtype));
  return enqueue_convert(op, x, dtype);
}

Tensor copy(const Tensor& x) {
  check_live("copy", x, "x");
  return enqueue_convert("copy", x, x.dtype());
}

}  // namespace r1v

#include "rope.h"

#include <cmath>

#include "../core/thread_pool.h"
#include "../kernels/rope.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

constexpr int64_t kCudaMaxDim = 8192;

RopeShape check_inputs(const char* op, const Tensor& x, const char* x_name, const Tensor& positions,
                       const RopeOptions& o) {
  check_live(op, x, x_name);
  check_live(op, positions, "positions");
  check_same_engine(op, positions, "positions", x, x_name);
  check_compute_dtype(op, x, x_name);
  check_dtype(op, positions, "positions", DType::I32);
  check_ndim(op, x, x_name, 3, "[T, H, D]");
  if (x.dim(2) % 2 != 0)
    fail(ErrorCode::Shape, op, ": ", x_name, " must have an even head dim D, got ", shape_str(x.shape()));
  check_shape(op, positions, "positions", {x.dim(0)});
  if (x.device().is_cuda() && x.dim(2) > kCudaMaxDim)  // the kernel keeps one token's cos/sin in shared memory
    fail(ErrorCode::Shape, op, ": ", x_name, " has head dim D = ", x.dim(2), "; CUDA supports D ≤ ", kCudaMaxDim);
  if (!(o.theta > 0) || !std::isfinite(o.theta))
    fail(ErrorCode::Argument, op, ": theta must be a finite number > 0, got ", o.theta);
  RopeShape s;
  s.dtype = x.dtype();
  s.tokens = x.dim(0);
  s.heads = x.dim(1);
  s.dim = x.dim(2);
  s.theta = o.theta;
  return s;
}

Tensor rotate(const char* op, const Tensor& x, const Tensor& positions, const RopeShape& s) {
  auto ctx = x.context();
  Tensor y = Tensor::empty(ctx, x.shape(), s.dtype);
  enqueue_op(ctx, {x, positions}, {y}, [op, x, positions, y, s] {
    if (x.numel() == 0) return;
    Context& c = *x.context();
    const auto* pos = static_cast<const int32_t*>(positions.data());
    on_device(
        c, op,
        [&] {
          // cos and sin of one token's D/2 angles, per thread
          Tensor scratch = Tensor::empty(c.shared_from_this(), {ThreadPool::global().num_threads(), s.dim}, DType::F32);
          cpu::rope(s, x.data(), pos, y.data(), static_cast<float*>(scratch.data()));
        },
        [&](Stream& stream) { cuda::rope(s, x.data(), pos, y.data(), stream.cuda_stream()); });
  });
  return y;
}

}  // namespace

Tensor rope(const Tensor& x, const Tensor& positions, const RopeOptions& options) {
  RopeShape s = check_inputs("rope", x, "x", positions, options);
  return rotate("rope", x, positions, s);
}

Tensor rope_backward(const Tensor& dy, const Tensor& positions, const RopeOptions& options) {
  RopeShape s = check_inputs("ropeBackward", dy, "dY", positions, options);
  s.sin_sign = -1.f;
  return rotate("ropeBackward", dy, positions, s);
}

}  // namespace r1v

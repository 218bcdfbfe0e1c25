#include "sum_of_squares.h"

#include <algorithm>
#include <string>

#include "../kernels/sum_of_squares.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {
constexpr const char* kOp = "sumOfSquares";
}  // namespace

Tensor sum_of_squares(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) fail(ErrorCode::Argument, kOp, ": tensors must hold at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::string name = concat("tensors[", i, "]");
    check_live(kOp, tensors[i], name.c_str());
    check_same_engine(kOp, tensors[i], name.c_str(), tensors[0], "tensors[0]");
    check_compute_dtype(kOp, tensors[i], name.c_str());
  }
  auto ctx = tensors[0].context();
  Tensor out = Tensor::empty(ctx, {1}, DType::F32);
  enqueue_op(ctx, tensors, {out}, [tensors, out] {
    std::vector<SquaresInput> inputs;
    inputs.reserve(tensors.size());
    for (const Tensor& t : tensors) inputs.push_back({t.dtype(), t.data(), t.numel()});
    auto* result = static_cast<float*>(out.data());
    const auto& ctx = out.context();
    on_device(
        *ctx, kOp, [&] { cpu::sum_of_squares(inputs, result); },
        [&](Stream& s) {
          // f64 partials, held as pairs of i32 (the scratch only needs the bytes).
          int64_t partials = std::max<int64_t>(1, cuda::partials_needed(inputs));
          Tensor scratch = Tensor::empty(ctx, {2 * partials}, DType::I32);
          cuda::sum_of_squares(inputs, static_cast<double*>(scratch.data()), result, s.cuda_stream());
        });
  });
  return out;
}

}  // namespace r1v

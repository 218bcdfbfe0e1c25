// fill: every element set to one value (zeros, ones). Enqueued on the tensor's stream.
#pragma once
#include "../core/tensor.h"

namespace r1v {

void fill(const Tensor& t, double value);
// The same at once, for work already running on t's stream (another op's scratch or output);
// `op` names that op in errors.
void fill_from_work(const char* op, const Tensor& t, double value);
Tensor full(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype, double value);

}  // namespace r1v

// fill: every element set to one value (zeros, ones). Enqueued on the tensor's stream.
#pragma once
#include "../core/tensor.h"

namespace r1v {

void fill(const Tensor& t, double value);
Tensor full(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype, double value);

namespace cpu {
void fill(void* data, DType dtype, int64_t count, double value);
}
namespace cuda {
void fill(void* data, DType dtype, int64_t count, double value, void* stream);
}

}  // namespace r1v

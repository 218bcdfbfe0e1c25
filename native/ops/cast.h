// cast(x, dtype): a new tensor of x's shape in a float dtype (f32, bf16, f16), values
// converted through f32 with round to nearest even (NaN stays NaN, Inf stays Inf); x may be
// any float dtype, on the CPU too (CPU tensors can hold bf16/f16 for storage). The same
// dtype gives a copy. copy(x): a fresh copy of x, any dtype (i32 included).
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

Tensor cast(const Tensor& x, DType dtype);
Tensor copy(const Tensor& x);

}  // namespace r1v

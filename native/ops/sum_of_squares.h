// sumOfSquares: Σ over every element of every tensor of x², as f32 [1] — the squared global
// gradient norm that gradient clipping needs (norm = sqrt of it). Float inputs of any dtype
// the device computes in; squares are accumulated in f64 on the CPU and in f32 per thread,
// f64 across blocks and tensors on CUDA. Both devices sum fixed-size chunks into partials
// and add the partials in a fixed order, so the result does not depend on the thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/tensor.h"

namespace r1v {

// Validate (non-empty list, one engine, float dtypes), allocate and enqueue.
Tensor sum_of_squares(const std::vector<Tensor>& tensors);

}  // namespace r1v

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

// One input as the kernels see it.
struct SquaresInput {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t numel = 0;
};

namespace cpu {
// Elements per partial sum: chunk boundaries fix the order of the additions.
constexpr int64_t kSquaresChunk = 16384;
// f32 inputs; writes the total (rounded to f32) to *out.
void sum_of_squares(const std::vector<SquaresInput>& inputs, float* out);
}  // namespace cpu

namespace cuda {
// f32, bf16, f16 inputs. partials: device f64 scratch of at least partials_needed(inputs)
// elements. One launch per non-empty input, then one to add the partials into *out.
int64_t partials_needed(const std::vector<SquaresInput>& inputs);
void sum_of_squares(const std::vector<SquaresInput>& inputs, double* partials, float* out, void* stream);
}  // namespace cuda

}  // namespace r1v

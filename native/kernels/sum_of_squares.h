// The sumOfSquares kernels (op: ops/sum_of_squares.h): Σ x² over every element of every input,
// written as f32 to *out. Both backends sum fixed-size chunks into partials and add the
// partials in a fixed order, so the result does not depend on the thread count. CPU: f32
// inputs, f64 sums; CUDA: f32/bf16/f16 inputs, f32 per thread, f64 across blocks and inputs.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/dtype.h"

namespace r1v {

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

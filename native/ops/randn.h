// randn: standard normal samples from Philox4x32-10 + Box-Muller. Element i uses
// counter block i/4 at the given offset; both backends compute the same values (CUDA
// to within a few ulp of the CPU, since their log/sin/cos differ in the last bits).
#pragma once
#include <optional>

#include "../core/tensor.h"

namespace r1v {

// With a seed: (seed, offset 0). Without: the engine's seed and its next offset.
Tensor randn(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype, std::optional<uint64_t> seed);

}  // namespace r1v

// reshape: a view of x with another shape of the same element count, sharing x's memory
// (and the error of the op that wrote it). No copy and no queued work: writes through
// either tensor (writeRows, adamwStep) are seen by both, in stream order. One entry of
// the new shape may be -1; it is inferred from the others.
#pragma once
#include <vector>

#include "../core/tensor.h"

namespace r1v {

// Validate (x live; every entry ≥ 0 or a single -1; equal element count) and return the view.
Tensor reshape(const Tensor& x, const std::vector<int64_t>& shape);

}  // namespace r1v

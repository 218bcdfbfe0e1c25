// The randn kernels (op: ops/randn.h): `count` standard normal samples of a float dtype from
// Philox4x32-10 + Box-Muller; element i uses counter block i/4 at `offset`, keyed by `seed`.
// Both backends compute the same values (CUDA to within a few ulp: its log/sin/cos differ).
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

namespace cpu {
void randn(void* data, DType dtype, int64_t count, uint64_t seed, uint64_t offset);
}
namespace cuda {
void randn(void* data, DType dtype, int64_t count, uint64_t seed, uint64_t offset, void* stream);
}

}  // namespace r1v

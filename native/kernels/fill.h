// The fill kernels (op: ops/fill.h): `count` elements of `dtype` at data set to `value`,
// converted once to the element type. Both backends take every dtype.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

namespace cpu {
void fill(void* data, DType dtype, int64_t count, double value);
}
namespace cuda {
void fill(void* data, DType dtype, int64_t count, double value, void* stream);
}

}  // namespace r1v

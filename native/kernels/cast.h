// The cast kernels (ops: cast, copy in ops/cast.h): n elements converted between float dtypes
// through f32, round to nearest even (NaN stays NaN, Inf stays Inf). Both backends take
// f32/bf16/f16 in any direction; a same-dtype copy is a byte copy.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

namespace cpu {
void cast(DType from, const void* x, int64_t n, DType to, void* out);
}
namespace cuda {
// Different float dtypes (a same-dtype copy is copy_bytes).
void cast(DType from, const void* x, int64_t n, DType to, void* out, void* stream);
// Device-to-device copy of `bytes` bytes in stream order; Error(Cuda) naming `op` when it fails.
void copy_bytes(const char* op, void* dst, const void* src, size_t bytes, void* stream);
}  // namespace cuda

}  // namespace r1v

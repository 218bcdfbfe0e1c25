// The gelu kernels (op: ops/gelu.h) over n contiguous elements: y = z·Φ(z) and
// dz = dy·(Φ(z) + z·φ(z)). CPU: f32; CUDA: f32/bf16/f16 with f32 math.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

namespace cpu {
void gelu(int64_t n, const float* z, float* y);
void gelu_backward(int64_t n, const float* z, const float* dy, float* dz);
}  // namespace cpu
namespace cuda {
void gelu(DType dtype, int64_t n, const void* z, void* y, void* stream);
void gelu_backward(DType dtype, int64_t n, const void* z, const void* dy, void* dz, void* stream);
}  // namespace cuda

}  // namespace r1v

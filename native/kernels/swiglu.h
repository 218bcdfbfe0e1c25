// The swiglu kernels (op: ops/swiglu.h) over n contiguous elements: y = silu(gate)·up and its
// backward dGate = dY·up·s·(1 + g·(1 − s)), dUp = dY·g·s with s = σ(g). CPU: f32; CUDA:
// f32/bf16/f16 with f32 math.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

namespace cpu {
void swiglu(int64_t n, const float* gate, const float* up, float* y);
void swiglu_backward(int64_t n, const float* gate, const float* up, const float* dy, float* d_gate, float* d_up);
}  // namespace cpu
namespace cuda {
void swiglu(DType dtype, int64_t n, const void* gate, const void* up, void* y, void* stream);
void swiglu_backward(DType dtype, int64_t n, const void* gate, const void* up, const void* dy, void* d_gate,
                     void* d_up, void* stream);
}  // namespace cuda

}  // namespace r1v

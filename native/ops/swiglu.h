// swiglu: the gated MLP activation of Qwen2, y = silu(gate)·up with silu(g) = g·σ(g), elementwise
// over gate and up of one shape ([N, F] in the MLP). Backward, with s = σ(g):
//   dGate = dY·up·s·(1 + g·(1 − s)),  dUp = dY·g·s.
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

struct SwigluGradients {
  Tensor d_gate, d_up;
};

// Validate (same shape, dtype and engine), allocate and enqueue.
Tensor swiglu(const Tensor& gate, const Tensor& up);
SwigluGradients swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dy);

// The kernels of both backends over n elements (CPU: f32; CUDA: f32/bf16/f16, f32 math).
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

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

}  // namespace r1v

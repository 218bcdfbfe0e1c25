// gelu: the exact (erf) GELU of the ViT MLP, y = z·Φ(z) = ½z·erfc(−z/√2), elementwise, and its
// backward dZ = dY·(Φ(z) + z·φ(z)). The forward of a Linear + GELU can also be fused into the
// GEMM epilogue (ops/matmul.h); this standalone pair is for training, where the backward needs z.
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

// Validate (float dtype the device computes in; dY like z), allocate and enqueue.
Tensor gelu(const Tensor& z);
Tensor gelu_backward(const Tensor& z, const Tensor& dy);

}  // namespace r1v

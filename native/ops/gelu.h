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

// The kernels of both backends over n elements (CPU: f32; CUDA: f32/bf16/f16, f32 math).
namespace cpu {
void gelu(int64_t n, const float* z, float* y);
void gelu_backward(int64_t n, const float* z, const float* dy, float* dz);
}  // namespace cpu
namespace cuda {
void gelu(DType dtype, int64_t n, const void* z, void* y, void* stream);
void gelu_backward(DType dtype, int64_t n, const void* z, const void* dy, void* dz, void* stream);
}  // namespace cuda

}  // namespace r1v

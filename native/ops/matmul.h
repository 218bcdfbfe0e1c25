// matmul: C = act(op(A) · op(B) + bias), op = optional transpose of the last two dims.
// 2-D [M,K]·[K,N] and batched 3-D; a batch of 1 (or a 2-D operand) is broadcast.
// CPU: f32 (BLAS when loaded, else the built-in blocked kernel). CUDA: f32/bf16/f16
// with f32 accumulation (cuBLASLt when loaded, else the engine's own kernels; tensor
// cores for 16-bit types).
#pragma once
#include <cstdint>

#include "../core/tensor.h"
#include "../kernels/matmul.h"

namespace r1v {

struct MatmulOptions {
  bool trans_a = false;
  bool trans_b = false;
  Tensor bias;  // [N], same dtype and engine as a; undefined for none
  Activation activation = Activation::None;
};

// Validates, allocates the output and enqueues the work on the operands' stream.
Tensor matmul(const Tensor& a, const Tensor& b, const MatmulOptions& options);

// Runs p with the engine's backend (CPU: BLAS or built-in per ctx's setting; CUDA: cuBLASLt
// when loaded, else the engine's kernels), epilogue included. Call from work running on
// ctx's stream, with p's pointers set. Other ops (connector, linearTokenStats, the model)
// use this for their products.
void run_gemm(Context& ctx, const GemmProblem& p);

}  // namespace r1v

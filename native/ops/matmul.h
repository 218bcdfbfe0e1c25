// matmul: C = op(A) · op(B), op = optional transpose of the last two dims.
// 2-D [M,K]·[K,N] and batched 3-D; a batch of 1 (or a 2-D operand) is broadcast.
// CPU: f32 (BLAS when loaded, else the built-in blocked kernel). CUDA: f32/bf16/f16
// with f32 accumulation (the engine's own kernel; tensor cores for 16-bit types).
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

struct MatmulOptions {
  bool trans_a = false;
  bool trans_b = false;
};

// Validates, allocates the output and enqueues the work on the operands' stream.
Tensor matmul(const Tensor& a, const Tensor& b, const MatmulOptions& options);

// One batched GEMM as the kernels see it: for each batch index i,
// C_i[M,N] = op(A_i) · op(B_i), with A_i = a + i·stride_a (stride 0 broadcasts).
// Row-major: op(A) is [M,K]; A is stored [M,K] (lda ≥ K) or, transposed, [K,M] (lda ≥ M).
struct GemmProblem {
  DType dtype = DType::F32;
  int64_t batch = 1, m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  bool trans_a = false;
  const void* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  bool trans_b = false;
  void* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
};

namespace cpu {
// f32 only; overwrites C. The engine's own blocked, vectorised kernel (threads from the
// global pool). Runs on any x86-64 or other CPU; picks AVX-512 / AVX2 at run time.
void gemm_builtin(const GemmProblem& p);
}  // namespace cpu

namespace cuda {
// f32, bf16, f16 (C in the same dtype, f32 accumulation); stream is a cudaStream_t.
void gemm(const GemmProblem& p, void* stream);
}  // namespace cuda

}  // namespace r1v

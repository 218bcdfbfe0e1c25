// The GEMM kernel interface: a GemmProblem is one batched C = act(op(A)·op(B) + bias) on raw
// pointers. The matmul op (ops/matmul.h) and every op that needs a product build one and run
// it through run_gemm (ops/matmul.h), which picks the backend. CPU: f32 (the built-in kernel,
// or BLAS with gemm_epilogue as a separate pass); CUDA: f32/bf16/f16 with f32 accumulation.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

class Context;

// Elementwise activation applied in a GEMM's epilogue. Gelu is the exact (erf) form.
enum class Activation { None, Gelu, Silu };

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

  // Epilogue, per output element (i, j) with acc = Σ_k op(A)[i,k]·op(B)[k,j] in f32:
  //   z = acc + bias[j]              (bias: [N] in the dtype of C, or nullptr)
  //   pre_activation[i, j] = z       (optional, same layout as C: what backward needs)
  //   C[i, j] = act(z), or C[i, j] += act(z) when accumulate (gradient accumulation)
  const void* bias = nullptr;
  Activation activation = Activation::None;
  void* pre_activation = nullptr;
  bool accumulate = false;
};

namespace cpu {
// f32 only; computes the whole GemmProblem, epilogue included (fused into the write-out
// of the last k block). The engine's own blocked, vectorised kernel (threads from the
// global pool). Runs on any x86-64 or other CPU; picks AVX-512 / AVX2 at run time.
void gemm_builtin(const GemmProblem& p);

// p's epilogue as a separate pass, for products computed elsewhere (BLAS): `product`
// holds op(A)·op(B) laid out like C (it may be C or pre_activation itself).
void gemm_epilogue(const GemmProblem& p, const float* product);
}  // namespace cpu

namespace cuda {
// f32, bf16, f16 (C in the same dtype, f32 accumulation), epilogue included. cuBLASLt
// when it is loaded and takes the problem, else the engine's own kernels. Runs on ctx's
// stream; workspace comes from ctx's allocator.
void gemm(Context& ctx, const GemmProblem& p);
}  // namespace cuda

}  // namespace r1v

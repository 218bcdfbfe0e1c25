#include "matmul.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "../core/blas.h"
#include "../core/thread_pool.h"
#include "fill.h"

namespace r1v {

namespace {

// The product alone (no epilogue), overwriting C.
void run_cpu_product(const GemmProblem& p, CpuGemmBackend backend) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  const BlasLibrary* lib = backend == CpuGemmBackend::Builtin ? nullptr : blas();
  if (backend == CpuGemmBackend::Blas && !lib)
    fail(ErrorCode::Argument, "the CPU GEMM backend is 'blas' but no BLAS library could be loaded");
  bool fits_int = std::max({p.m, p.n, p.k, p.lda, p.ldb, p.ldc}) <= INT_MAX;
  if (!lib || !fits_int || p.k == 0) {  // k == 0: BLAS would scale C (maybe NaN) by 0
    cpu::gemm_builtin(p);
    return;
  }
  static std::once_flag threads_set;
  std::call_once(threads_set, [] { blas_set_threads(ThreadPool::global().num_threads()); });
  for (int64_t i = 0; i < p.batch; ++i) {
    lib->sgemm(p.trans_a, p.trans_b, static_cast<int>(p.m), static_cast<int>(p.n), static_cast<int>(p.k),
               static_cast<const float*>(p.a) + i * p.stride_a, static_cast<int>(p.lda),
               static_cast<const float*>(p.b) + i * p.stride_b, static_cast<int>(p.ldb),
               static_cast<float*>(p.c) + i * p.stride_c, static_cast<int>(p.ldc));
  }
}

float activate(Activation act, float z) {
  switch (act) {
    case Activation::None:
      return z;
    case Activation::Gelu:
      return 0.5f * z * (1.f + std::erf(z * 0.70710678118654752f));
    case Activation::Silu:
      return z / (1.f + std::exp(-z));
  }
  return z;
}

bool has_epilogue(const GemmProblem& p) {
  return p.bias || p.activation != Activation::None || p.pre_activation || p.accumulate;
}

// CPU epilogue as a pass over the product held in `product` (laid out like C).
void apply_cpu_epilogue(const GemmProblem& p, const float* product) {
  const auto* bias = static_cast<const float*>(p.bias);
  ThreadPool::global().parallel_for(p.batch * p.m, std::max<int64_t>(1, 65536 / std::max<int64_t>(p.n, 1)),
                                    [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t b = r / p.m, i = r % p.m;
      const float* src = product + b * p.stride_c + i * p.ldc;
      float* c = static_cast<float*>(p.c) + b * p.stride_c + i * p.ldc;
      float* pre = p.pre_activation ? static_cast<float*>(p.pre_activation) + b * p.stride_c + i * p.ldc : nullptr;
      for (int64_t j = 0; j < p.n; ++j) {
        float z = src[j] + (bias ? bias[j] : 0.f);
        if (pre) pre[j] = z;
        float y = activate(p.activation, z);
        c[j] = p.accumulate ? c[j] + y : y;
      }
    }
  });
}

}  // namespace

void run_gemm(Context& ctx, const GemmProblem& p) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  if (ctx.device().is_cuda()) {
#if R1V_WITH_CUDA
    cuda::gemm(p, ctx.stream().cuda_stream());
#endif
    return;
  }
  if (!has_epilogue(p)) {
    run_cpu_product(p, ctx.cpu_gemm());
    return;
  }
  // The product goes to scratch (or C itself when C is overwritten), then the epilogue pass.
  Tensor scratch;
  GemmProblem product = p;
  if (p.accumulate) {
    scratch = Tensor::empty(ctx.shared_from_this(), {(p.batch - 1) * p.stride_c + (p.m - 1) * p.ldc + p.n}, DType::F32);
    product.c = scratch.data();
  }
  product.bias = nullptr;
  product.activation = Activation::None;
  product.pre_activation = nullptr;
  product.accumulate = false;
  run_cpu_product(product, ctx.cpu_gemm());
  apply_cpu_epilogue(p, static_cast<const float*>(product.c));
}

Tensor matmul(const Tensor& a, const Tensor& b, const MatmulOptions& options) {
  a.check_alive("matmul: a");
  b.check_alive("matmul: b");
  if (a.context() != b.context())
    fail(ErrorCode::Device, "matmul: a (", a.device().id(), ") and b (", b.device().id(),
         ") belong to different engines");
  if (a.dtype() != b.dtype())
    fail(ErrorCode::DType, "matmul: a is ", dtype_name(a.dtype()), " but b is ", dtype_name(b.dtype()));
  if (!is_floating(a.dtype())) fail(ErrorCode::DType, "matmul: i32 tensors are not supported (a and b are i32)");
  if (a.device().is_cpu() && a.dtype() != DType::F32)
    fail(ErrorCode::DType, "matmul on the CPU supports f32 only (a and b are ", dtype_name(a.dtype()), ")");
  if (a.ndim() < 2 || a.ndim() > 3)
    fail(ErrorCode::Shape, "matmul: a must be 2-D or 3-D, got shape ", shape_str(a.shape()));
  if (b.ndim() < 2 || b.ndim() > 3)
    fail(ErrorCode::Shape, "matmul: b must be 2-D or 3-D, got shape ", shape_str(b.shape()));

  int64_t a_rows = a.dim(-2), a_cols = a.dim(-1), b_rows = b.dim(-2), b_cols = b.dim(-1);
  int64_t m = options.trans_a ? a_cols : a_rows, k = options.trans_a ? a_rows : a_cols;
  int64_t kb = options.trans_b ? b_cols : b_rows, n = options.trans_b ? b_rows : b_cols;
  if (k != kb)
    fail(ErrorCode::Shape, "matmul: inner dimensions differ: op(a) is [", m, ", ", k, "] (a ", shape_str(a.shape()),
         options.trans_a ? ", transA" : "", ") and op(b) is [", kb, ", ", n, "] (b ", shape_str(b.shape()),
         options.trans_b ? ", transB" : "", ")");
  int64_t batch_a = a.ndim() == 3 ? a.dim(0) : 1, batch_b = b.ndim() == 3 ? b.dim(0) : 1;
  if (batch_a != batch_b && batch_a != 1 && batch_b != 1)
    fail(ErrorCode::Shape, "matmul: batch sizes differ: a ", shape_str(a.shape()), " and b ", shape_str(b.shape()));
  int64_t batch = std::max(batch_a, batch_b);

  bool batched = a.ndim() == 3 || b.ndim() == 3;
  Shape out_shape = batched ? Shape{batch, m, n} : Shape{m, n};
  Tensor out = Tensor::empty(a.context(), out_shape, a.dtype());

  GemmProblem p;
  p.dtype = a.dtype();
  p.batch = batch;
  p.m = m;
  p.n = n;
  p.k = k;
  p.trans_a = options.trans_a;
  p.trans_b = options.trans_b;
  p.lda = a_cols;
  p.ldb = b_cols;
  p.ldc = n;
  p.stride_a = batch_a == 1 ? 0 : a_rows * a_cols;
  p.stride_b = batch_b == 1 ? 0 : b_rows * b_cols;
  p.stride_c = m * n;

  auto ctx = a.context();
  enqueue_op(ctx, {a, b}, {out}, [a, b, out, p]() mutable {
    p.a = a.data();
    p.b = b.data();
    p.c = out.data();
    run_gemm(*out.context(), p);
  });
  return out;
}

}  // namespace r1v

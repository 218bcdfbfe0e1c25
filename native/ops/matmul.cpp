#include "matmul.h"

#include <algorithm>
#include <climits>
#include <mutex>
#include <vector>

#include "../core/blas.h"
#include "../core/cpu_info.h"
#include "../core/thread_pool.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

// Whether p goes to the built-in kernel rather than BLAS.
bool uses_builtin(const GemmProblem& p, CpuGemmBackend backend) {
  // 'auto' prefers the built-in kernel wherever it has a vectorised path (it runs at ~90% of
  // the FMA peak, about twice the OpenBLAS we measured beside it); BLAS only where the built-in
  // kernel would fall back to portable code.
  const bool want_blas =
      backend == CpuGemmBackend::Blas || (backend == CpuGemmBackend::Auto && cpu_info().isa == "generic");
  const BlasLibrary* lib = want_blas ? blas() : nullptr;
  if (backend == CpuGemmBackend::Blas && !lib)
    fail(ErrorCode::Argument, "the CPU GEMM backend is 'blas' but no BLAS library could be loaded");
  bool fits_int = std::max({p.m, p.n, p.k, p.lda, p.ldb, p.ldc}) <= INT_MAX;
  return !lib || !fits_int || p.k == 0;  // k == 0: BLAS would scale C (maybe NaN) by 0
}

// p with the built-in kernel (epilogue included), or its product alone with BLAS.
void run_cpu_product(const GemmProblem& p, CpuGemmBackend backend) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  if (uses_builtin(p, backend)) {
    cpu::gemm_builtin(p);
    return;
  }
  const BlasLibrary* lib = blas();
  static std::once_flag threads_set;
  std::call_once(threads_set, [] { blas_set_threads(ThreadPool::global().num_threads()); });
  for (int64_t i = 0; i < p.batch; ++i) {
    lib->sgemm(p.trans_a, p.trans_b, static_cast<int>(p.m), static_cast<int>(p.n), static_cast<int>(p.k),
               static_cast<const float*>(p.a) + i * p.stride_a, static_cast<int>(p.lda),
               static_cast<const float*>(p.b) + i * p.stride_b, static_cast<int>(p.ldb),
               static_cast<float*>(p.c) + i * p.stride_c, static_cast<int>(p.ldc));
  }
}

bool has_epilogue(const GemmProblem& p) {
  return p.bias || p.activation != Activation::None || p.pre_activation || p.accumulate;
}

// p on the CPU, with the backend chosen by ctx's setting.
void run_cpu_gemm(Context& ctx, const GemmProblem& p) {
  if (!has_epilogue(p) || uses_builtin(p, ctx.cpu_gemm())) {
    run_cpu_product(p, ctx.cpu_gemm());  // the built-in kernel fuses the epilogue
    return;
  }
  // BLAS: the product goes to C when C is overwritten, else to pre_activation (which the
  // epilogue overwrites anyway), else to scratch; then the epilogue pass.
  Tensor scratch;
  GemmProblem product = p;
  if (p.accumulate) {
    if (p.pre_activation) {
      product.c = p.pre_activation;
    } else {
      scratch = Tensor::empty(ctx.shared_from_this(), {(p.batch - 1) * p.stride_c + (p.m - 1) * p.ldc + p.n},
                              DType::F32);
      product.c = scratch.data();
    }
  }
  product.bias = nullptr;
  product.activation = Activation::None;
  product.pre_activation = nullptr;
  product.accumulate = false;
  run_cpu_product(product, ctx.cpu_gemm());
  cpu::gemm_epilogue(p, static_cast<const float*>(product.c));
}

}  // namespace

void run_gemm(Context& ctx, const GemmProblem& p) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  on_device(ctx, "gemm", [&] { run_cpu_gemm(ctx, p); }, [&](Stream&) { cuda::gemm(ctx, p); });
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

  const Tensor& bias = options.bias;
  if (bias.defined()) {
    check_live("matmul", bias, "bias");
    check_same_engine("matmul", bias, "bias", a, "a");
    check_same_dtype("matmul", bias, "bias", a, "a");
    check_shape("matmul", bias, "bias (one value per output column)", {n});
  }

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
  p.activation = options.activation;

  auto ctx = a.context();
  std::vector<Tensor> inputs{a, b};
  if (bias.defined()) inputs.push_back(bias);
  enqueue_op(ctx, std::move(inputs), {out}, [a, b, bias, out, p]() mutable {
    p.a = a.data();
    p.b = b.data();
    p.c = out.data();
    p.bias = bias.defined() ? bias.data() : nullptr;
    run_gemm(*out.context(), p);
  });
  return out;
}

}  // namespace r1v

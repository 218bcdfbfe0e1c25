#include "attention.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "../kernels/attention.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

// The validated problem with its host-side offsets; pointers are set inside the work.
struct Plan {
  AttentionProblem p;
  Shape lse_shape;
  std::shared_ptr<const std::vector<int32_t>> cu_q, cu_k;  // host copies, kept by the work
  std::shared_ptr<const std::vector<int32_t>> used_k;      // null without seqUsedK
};

// cu_seqlens must start at 0, never decrease and end at the row count of `rows_of`.
void check_cu_seqlens(const char* op, const std::vector<int32_t>& cu, const char* name, int64_t rows,
                      const char* rows_of) {
  if (cu.empty()) fail(ErrorCode::Shape, op, ": ", name, " must have B + 1 ≥ 1 entries, got none");
  if (cu[0] != 0) fail(ErrorCode::Argument, op, ": ", name, "[0] must be 0, got ", cu[0]);
  for (size_t i = 1; i < cu.size(); ++i) {
    if (cu[i] < cu[i - 1])
      fail(ErrorCode::Argument, op, ": ", name, " must be non-decreasing, but ", name, "[", i, "] = ", cu[i], " < ",
           name, "[", i - 1, "] = ", cu[i - 1]);
  }
  if (cu.back() != rows)
    fail(ErrorCode::Shape, op, ": ", name, " ends at ", cu.back(), " but ", rows_of, " has ", rows, " rows");
}

int64_t max_length(const std::vector<int32_t>& cu) {
  int64_t longest = 0;
  for (size_t i = 1; i < cu.size(); ++i) longest = std::max<int64_t>(longest, cu[i] - cu[i - 1]);
  return longest;
}

std::shared_ptr<const std::vector<int32_t>> uniform_offsets(int64_t batch, int64_t length) {
  auto cu = std::make_shared<std::vector<int32_t>>(batch + 1);
  for (int64_t b = 0; b <= batch; ++b) (*cu)[b] = static_cast<int32_t>(b * length);
  return cu;
}

Plan plan_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                    const AttentionOptions& options) {
  check_live(op, q, "q");
  check_live(op, k, "k");
  check_live(op, v, "v");
  check_same_engine(op, k, "k", q, "q");
  check_same_engine(op, v, "v", q, "q");
  check_compute_dtype(op, q, "q");
  check_same_dtype(op, k, "k", q, "q");
  check_same_dtype(op, v, "v", q, "q");

  bool packed = options.cu_seqlens_q.has_value();
  if (packed != options.cu_seqlens_k.has_value())
    fail(ErrorCode::Argument, op, ": cuSeqlensQ and cuSeqlensK must be given together (packed layout) or not at all");
  const char* layout_q = packed ? "[Tq, Hq, D] (packed layout)" : "[B, Sq, Hq, D]";
  const char* layout_k = packed ? "[Tk, Hkv, D] (packed layout)" : "[B, Sk, Hkv, D]";
  int ndim = packed ? 3 : 4;
  check_ndim(op, q, "q", ndim, layout_q);
  check_ndim(op, k, "k", ndim, layout_k);
  check_shape(op, v, "v", k.shape());

  int64_t heads_q = q.dim(-2), heads_kv = k.dim(-2), head_dim = q.dim(-1);
  if (k.dim(-1) != head_dim)
    fail(ErrorCode::Shape, op, ": k has head dim ", k.dim(-1), " but q has ", head_dim, " (q ", shape_str(q.shape()),
         ", k ", shape_str(k.shape()), ")");
  if (head_dim <= 0 || head_dim > 256 || head_dim % 8 != 0)
    fail(ErrorCode::Shape, op, ": the head dim D (last dim of q) must be a multiple of 8 in [8, 256], got ", head_dim);
  if (heads_kv <= 0 || heads_q % heads_kv != 0)
    fail(ErrorCode::Shape, op, ": q's head count (", heads_q, ") must be a multiple of k's (", heads_kv,
         "), which must be ≥ 1 (GQA)");

  Plan plan;
  AttentionProblem& p = plan.p;
  if (packed) {
    const auto& cu_q = *options.cu_seqlens_q;
    const auto& cu_k = *options.cu_seqlens_k;
    check_cu_seqlens(op, cu_q, "cuSeqlensQ", q.dim(0), "q");
    check_cu_seqlens(op, cu_k, "cuSeqlensK", k.dim(0), "k");
    if (cu_q.size() != cu_k.size())
      fail(ErrorCode::Shape, op, ": cuSeqlensQ has ", cu_q.size(), " entries but cuSeqlensK has ", cu_k.size(),
           " (both are B + 1)");
    plan.cu_q = std::make_shared<const std::vector<int32_t>>(cu_q);
    plan.cu_k = std::make_shared<const std::vector<int32_t>>(cu_k);
    p.batch = static_cast<int64_t>(cu_q.size()) - 1;
    p.rows_q = q.dim(0);
    p.rows_k = k.dim(0);
    p.max_seqlen_q = max_length(cu_q);
    p.max_seqlen_k = max_length(cu_k);
    if (options.seq_used_k) {
      const auto& used = *options.seq_used_k;
      if (static_cast<int64_t>(used.size()) != p.batch)
        fail(ErrorCode::Shape, op, ": seqUsedK has ", used.size(), " entries but there are ", p.batch,
             " sequences (B = cuSeqlensK entries − 1)");
      p.max_seqlen_k = 0;
      for (size_t b = 0; b < used.size(); ++b) {
        const int32_t slot = cu_k[b + 1] - cu_k[b];
        if (used[b] < 0 || used[b] > slot)
          fail(ErrorCode::Argument, op, ": seqUsedK[", b, "] = ", used[b], " is outside [0, ", slot,
               "] (the rows of slot ", b, " in cuSeqlensK)");
        p.max_seqlen_k = std::max<int64_t>(p.max_seqlen_k, used[b]);
      }
      plan.used_k = std::make_shared<const std::vector<int32_t>>(used);
    }
    p.lse_stride_b = 0;
    p.lse_stride_h = p.rows_q;
    p.lse_packed = true;
    plan.lse_shape = {heads_q, p.rows_q};
  } else {
    if (options.seq_used_k)
      fail(ErrorCode::Argument, op, ": seqUsedK needs the packed layout (cuSeqlensQ and cuSeqlensK)");
    if (k.dim(0) != q.dim(0))
      fail(ErrorCode::Shape, op, ": k has batch ", k.dim(0), " but q has ", q.dim(0), " (q ", shape_str(q.shape()),
           ", k ", shape_str(k.shape()), ")");
    p.batch = q.dim(0);
    p.max_seqlen_q = q.dim(1);
    p.max_seqlen_k = k.dim(1);
    if (p.batch * std::max(p.max_seqlen_q, p.max_seqlen_k) > INT32_MAX)
      fail(ErrorCode::Shape, op, ": more than 2^31 − 1 rows (q ", shape_str(q.shape()), ", k ", shape_str(k.shape()),
           ")");
    plan.cu_q = uniform_offsets(p.batch, p.max_seqlen_q);
    plan.cu_k = uniform_offsets(p.batch, p.max_seqlen_k);
    p.rows_q = p.batch * p.max_seqlen_q;
    p.rows_k = p.batch * p.max_seqlen_k;
    p.lse_stride_b = heads_q * p.max_seqlen_q;
    p.lse_stride_h = p.max_seqlen_q;
    p.lse_packed = false;
    plan.lse_shape = {p.batch, heads_q, p.max_seqlen_q};
  }
  if (options.scale && !std::isfinite(*options.scale))
    fail(ErrorCode::Argument, op, ": scale must be a finite number, got ", *options.scale);
  p.dtype = q.dtype();
  p.heads_q = heads_q;
  p.heads_kv = heads_kv;
  p.head_dim = head_dim;
  p.causal = options.causal;
  p.scale = options.scale.value_or(1.f / std::sqrt(static_cast<float>(head_dim)));
  return plan;
}

// The kernels' view of the offsets: the host arrays on the CPU, i32 device copies on CUDA
// (stream-ordered, so they are in place before the kernel runs).
struct Offsets {
  Tensor cu_q, cu_k, used_k;  // CUDA only; used_k only with seqUsedK
};

Offsets device_offsets(const Tensor& q, const Plan& plan) {
  Offsets o;
  if (q.device().is_cuda()) {
    auto n = plan.cu_q->size();
    o.cu_q = tensor_from_host(q.context(), {static_cast<int64_t>(n)}, DType::I32, plan.cu_q->data(), HostType::I32, n);
    o.cu_k = tensor_from_host(q.context(), {static_cast<int64_t>(n)}, DType::I32, plan.cu_k->data(), HostType::I32, n);
    if (plan.used_k && !plan.used_k->empty()) {
      auto b = plan.used_k->size();
      o.used_k =
          tensor_from_host(q.context(), {static_cast<int64_t>(b)}, DType::I32, plan.used_k->data(), HostType::I32, b);
    }
  }
  return o;
}

void set_offsets(AttentionProblem& p, const Plan& plan, const Offsets& o) {
  if (o.cu_q.defined()) {
    p.cu_q = static_cast<const int32_t*>(o.cu_q.data());
    p.cu_k = static_cast<const int32_t*>(o.cu_k.data());
    p.used_k = o.used_k.defined() ? static_cast<const int32_t*>(o.used_k.data()) : nullptr;
  } else {
    p.cu_q = plan.cu_q->data();
    p.cu_k = plan.cu_k->data();
    p.used_k = plan.used_k ? plan.used_k->data() : nullptr;
  }
}

}  // namespace

AttentionResult attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  Plan plan = plan_attention("attention", q, k, v, options);
  auto ctx = q.context();
  Tensor out = Tensor::empty(ctx, q.shape(), q.dtype());
  Tensor lse = Tensor::empty(ctx, plan.lse_shape, DType::F32);
  Offsets offsets = device_offsets(q, plan);
  enqueue_op(ctx, {q, k, v}, {out, lse}, [q, k, v, out, lse, plan, offsets]() mutable {
    AttentionProblem& p = plan.p;
    set_offsets(p, plan, offsets);
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.out = out.data();
    p.lse = static_cast<float*>(lse.data());
    on_device(
        *out.context(), "attention", [&] { cpu::attention_forward(p); },
        [&](Stream& s) { cuda::attention_forward(p, s.cuda_stream()); });
  });
  return {out, lse};
}

AttentionGradients attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                      const Tensor& lse, const Tensor& d_out, const AttentionOptions& options) {
  const char* op = "attentionBackward";
  if (options.seq_used_k)
    fail(ErrorCode::Argument, op, ": seqUsedK (KV-cache attention) is forward only; pass whole sequences instead");
  Plan plan = plan_attention(op, q, k, v, options);
  check_live(op, out, "out");
  check_live(op, lse, "lse");
  check_live(op, d_out, "dOut");
  check_same_engine(op, out, "out", q, "q");
  check_same_engine(op, lse, "lse", q, "q");
  check_same_engine(op, d_out, "dOut", q, "q");
  check_same_dtype(op, out, "out", q, "q");
  check_same_dtype(op, d_out, "dOut", q, "q");
  check_dtype(op, lse, "lse", DType::F32);
  check_shape(op, out, "out", q.shape());
  check_shape(op, d_out, "dOut", q.shape());
  check_shape(op, lse, "lse", plan.lse_shape);

  auto ctx = q.context();
  Tensor dq = Tensor::empty(ctx, q.shape(), q.dtype());
  Tensor dk = Tensor::empty(ctx, k.shape(), k.dtype());
  Tensor dv = Tensor::empty(ctx, v.shape(), v.dtype());
  Tensor delta = Tensor::empty(ctx, plan.lse_shape, DType::F32);
  Tensor workspace;
  on_device(*ctx, op, kNoCpuWork, [&](Stream&) {
    workspace =
        Tensor::empty(ctx, {std::max<int64_t>(1, cuda::attention_backward_workspace_floats(plan.p))}, DType::F32);
  });
  Offsets offsets = device_offsets(q, plan);
  enqueue_op(ctx, {q, k, v, out, lse, d_out}, {dq, dk, dv},
             [op, q, k, v, out, lse, d_out, dq, dk, dv, delta, workspace, plan, offsets]() mutable {
    AttentionProblem& p = plan.p;
    set_offsets(p, plan, offsets);
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.out = out.data();
    p.lse = static_cast<float*>(lse.data());
    p.d_out = d_out.data();
    p.dq = dq.data();
    p.dk = dk.data();
    p.dv = dv.data();
    p.delta = static_cast<float*>(delta.data());
    on_device(
        *dq.context(), op, [&] { cpu::attention_backward(p); },
        [&](Stream& s) { cuda::attention_backward(p, static_cast<float*>(workspace.data()), s.cuda_stream()); });
  });
  return {dq, dk, dv};
}

}  // namespace r1v

#include "connector.h"

#include <algorithm>
#include <cmath>

#include "../kernels/connector.h"
#include "dispatch.h"
#include "fill.h"
#include "matmul.h"
#include "op_checks.h"

namespace r1v {

namespace {

constexpr const char* kForward = "connector";
constexpr const char* kBackward = "connectorBackward";

// Checks x and p against each other; returns the shape and H.
ConnectorShape check_inputs(const char* op, const Tensor& x, const ConnectorParams& p, const ConnectorOptions& o,
                            int64_t* hidden) {
  check_live(op, x, "x");
  const std::pair<const Tensor*, const char*> params[] = {{&p.ln_weight, "p.lnWeight"}, {&p.ln_bias, "p.lnBias"},
                                                          {&p.w1, "p.w1"},             {&p.b1, "p.b1"},
                                                          {&p.w2, "p.w2"},             {&p.b2, "p.b2"}};
  for (const auto& [t, name] : params) check_live(op, *t, name);
  for (const auto& [t, name] : params) check_same_engine(op, *t, name, x, "x");
  check_compute_dtype(op, x, "x");
  for (const auto& [t, name] : params) check_same_dtype(op, *t, name, x, "x");

  check_ndim(op, x, "x", 4, "[B, h, w, C]");
  if (x.dim(1) % 2 != 0 || x.dim(2) % 2 != 0)
    fail(ErrorCode::Shape, op, ": x must have even h and w, got ", shape_str(x.shape()));
  const int64_t c = x.dim(3);
  if (c == 0) fail(ErrorCode::Shape, op, ": x must have C ≥ 1 channels, got ", shape_str(x.shape()));
  const int64_t k = 4 * c;
  check_shape(op, p.ln_weight, "p.lnWeight", {k});
  check_shape(op, p.ln_bias, "p.lnBias", {k});
  if (p.w1.ndim() != 2 || p.w1.dim(1) != k || p.w1.dim(0) == 0)
    fail(ErrorCode::Shape, op, ": p.w1 must have shape [H, 4C] = [H, ", k, "] with H ≥ 1, got ",
         shape_str(p.w1.shape()));
  const int64_t h = p.w1.dim(0);
  check_shape(op, p.b1, "p.b1", {h});
  check_shape(op, p.w2, "p.w2", {h, h});
  check_shape(op, p.b2, "p.b2", {h});
  const float eps = static_cast<float>(o.eps);  // the kernels add it in f32: it must survive the rounding
  if (!(eps > 0) || !std::isfinite(eps))
    fail(ErrorCode::Argument, op, ": eps must be a positive finite number (as f32), got ", o.eps);

  ConnectorShape s;
  s.dtype = x.dtype();
  s.batch = x.dim(0);
  s.h = x.dim(1);
  s.w = x.dim(2);
  s.channels = c;
  s.eps = eps;
  *hidden = h;
  return s;
}

// y[rows, n] = act(a[rows, k]·W[n, k]ᵀ + bias), optionally keeping the pre-activation.
void linear(Context& ctx, DType dtype, int64_t rows, int64_t n, int64_t k, const void* a, const void* w,
            const void* bias, Activation act, void* out, void* pre_activation) {
  GemmProblem g;
  g.dtype = dtype;
  g.m = rows;
  g.n = n;
  g.k = k;
  g.a = a;
  g.lda = k;
  g.b = w;
  g.ldb = k;
  g.trans_b = true;
  g.c = out;
  g.ldc = n;
  g.bias = bias;
  g.activation = act;
  g.pre_activation = pre_activation;
  run_gemm(ctx, g);
}

// C[m, n] = op(A)·B with A stored [k, m] when trans_a (weight gradients: dᵀ·input) or [m, k]
// (input gradients: d·W), B stored [k, n].
void product(Context& ctx, DType dtype, int64_t m, int64_t n, int64_t k, const void* a, bool trans_a, const void* b,
             void* c) {
  GemmProblem g;
  g.dtype = dtype;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.trans_a = trans_a;
  g.lda = trans_a ? m : k;
  g.b = b;
  g.ldb = n;
  g.c = c;
  g.ldc = n;
  run_gemm(ctx, g);
}

// The shuffled, normalised input [T, 4C] and its row statistics, into fresh scratch.
struct Normalised {
  Tensor normed, stats;  // stats: mean [T] then rstd [T], f32
  float* mean() const { return static_cast<float*>(stats.data()); }
  float* rstd() const { return static_cast<float*>(stats.data()) + stats.numel() / 2; }
};

Normalised shuffle_layernorm(const char* op, Context& ctx, const ConnectorShape& s, const Tensor& x,
                             const ConnectorParams& p) {
  auto shared = ctx.shared_from_this();
  Normalised n{Tensor::empty(shared, {s.rows(), s.features()}, s.dtype),
               Tensor::empty(shared, {2 * s.rows()}, DType::F32)};
  on_device(
      ctx, op,
      [&] {
        cpu::connector_shuffle_layernorm(s, x.data(), p.ln_weight.data(), p.ln_bias.data(), n.normed.data(), n.mean(),
                                         n.rstd());
      },
      [&](Stream& stream) {
        cuda::connector_shuffle_layernorm(s, x.data(), p.ln_weight.data(), p.ln_bias.data(), n.normed.data(), n.mean(),
                                          n.rstd(), stream.cuda_stream());
      });
  return n;
}

void column_sum(Context& ctx, DType dtype, int64_t rows, int64_t cols, const void* src, void* dst, float* ws) {
  on_device(
      ctx, kBackward, [&] { cpu::connector_column_sum(rows, cols, src, dst, ws); },
      [&](Stream& stream) { cuda::connector_column_sum(dtype, rows, cols, src, dst, ws, stream.cuda_stream()); });
}

void gelu_backward(Context& ctx, DType dtype, int64_t rows, int64_t cols, const void* z, void* da, void* d_bias,
                   float* ws) {
  on_device(
      ctx, kBackward, [&] { cpu::connector_gelu_backward(rows, cols, z, da, d_bias, ws); },
      [&](Stream& stream) {
        cuda::connector_gelu_backward(dtype, rows, cols, z, da, d_bias, ws, stream.cuda_stream());
      });
}

void layernorm_backward(Context& ctx, const ConnectorShape& s, const Tensor& x, const ConnectorParams& p,
                        const Normalised& n, const void* dn, const ConnectorGradients& g, float* ws) {
  on_device(
      ctx, kBackward,
      [&] {
        cpu::connector_layernorm_backward(s, x.data(), p.ln_weight.data(), n.mean(), n.rstd(), dn, g.dx.data(),
                                          g.d_ln_weight.data(), g.d_ln_bias.data(), ws);
      },
      [&](Stream& stream) {
        cuda::connector_layernorm_backward(s, x.data(), p.ln_weight.data(), n.mean(), n.rstd(), dn, g.dx.data(),
                                           g.d_ln_weight.data(), g.d_ln_bias.data(), ws, stream.cuda_stream());
      });
}

}  // namespace

Tensor connector_forward(const Tensor& x, const ConnectorParams& p, const ConnectorOptions& options) {
  int64_t hidden = 0;
  const ConnectorShape s = check_inputs(kForward, x, p, options, &hidden);
  Tensor y = Tensor::empty(x.context(), {s.batch, (s.h / 2) * (s.w / 2), hidden}, s.dtype);
  enqueue_op(x.context(), {x, p.ln_weight, p.ln_bias, p.w1, p.b1, p.w2, p.b2}, {y}, [x, p, y, s, hidden] {
    const int64_t t = s.rows();
    if (t == 0) return;
    Context& ctx = *y.context();
    Normalised n = shuffle_layernorm(kForward, ctx, s, x, p);
    Tensor a1 = Tensor::empty(ctx.shared_from_this(), {t, hidden}, s.dtype);
    linear(ctx, s.dtype, t, hidden, s.features(), n.normed.data(), p.w1.data(), p.b1.data(), Activation::Gelu,
           a1.data(), nullptr);
    linear(ctx, s.dtype, t, hidden, hidden, a1.data(), p.w2.data(), p.b2.data(), Activation::None, y.data(), nullptr);
  });
  return y;
}

ConnectorGradients connector_backward(const Tensor& x, const ConnectorParams& p, const Tensor& dy,
                                      const ConnectorOptions& options) {
  const char* op = kBackward;
  int64_t hidden = 0;
  const ConnectorShape s = check_inputs(op, x, p, options, &hidden);
  check_live(op, dy, "dY");
  check_same_engine(op, dy, "dY", x, "x");
  check_same_dtype(op, dy, "dY", x, "x");
  check_shape(op, dy, "dY", {s.batch, (s.h / 2) * (s.w / 2), hidden});

  auto ctx = x.context();
  ConnectorGradients g{Tensor::empty(ctx, x.shape(), s.dtype),          Tensor::empty(ctx, p.ln_weight.shape(), s.dtype),
                       Tensor::empty(ctx, p.ln_bias.shape(), s.dtype),  Tensor::empty(ctx, p.w1.shape(), s.dtype),
                       Tensor::empty(ctx, p.b1.shape(), s.dtype),       Tensor::empty(ctx, p.w2.shape(), s.dtype),
                       Tensor::empty(ctx, p.b2.shape(), s.dtype)};
  enqueue_op(ctx, {x, p.ln_weight, p.ln_bias, p.w1, p.b1, p.w2, p.b2, dy},
             {g.dx, g.d_ln_weight, g.d_ln_bias, g.d_w1, g.d_b1, g.d_w2, g.d_b2}, [x, p, dy, g, s, hidden] {
    Context& ctx = *x.context();
    const int64_t t = s.rows(), k = s.features();
    if (t == 0) {  // sums over no rows
      for (const Tensor* d : {&g.d_ln_weight, &g.d_ln_bias, &g.d_w1, &g.d_b1, &g.d_w2, &g.d_b2})
        fill_from_work(kBackward, *d, 0.0);
      return;
    }
    auto shared = ctx.shared_from_this();
    Normalised n = shuffle_layernorm(kBackward, ctx, s, x, p);
    Tensor z1 = Tensor::empty(shared, {t, hidden}, s.dtype);
    Tensor a1 = Tensor::empty(shared, {t, hidden}, s.dtype);
    Tensor workspace = Tensor::empty(
        shared, {std::max(connector_partials_floats(t, hidden, 1), connector_partials_floats(t, k, 2))}, DType::F32);
    auto* ws = static_cast<float*>(workspace.data());
    linear(ctx, s.dtype, t, hidden, k, n.normed.data(), p.w1.data(), p.b1.data(), Activation::Gelu, a1.data(),
           z1.data());

    product(ctx, s.dtype, hidden, hidden, t, dy.data(), true, a1.data(), g.d_w2.data());  // dW2 = dYᵀ·a1
    column_sum(ctx, s.dtype, t, hidden, dy.data(), g.d_b2.data(), ws);                     // dB2 = Σ dY
    void* da1 = a1.data();  // a1 is dead once dW2 is queued; da1, then dz1, reuse its memory
    product(ctx, s.dtype, t, hidden, hidden, dy.data(), false, p.w2.data(), da1);  // da1 = dY·W2
    gelu_backward(ctx, s.dtype, t, hidden, z1.data(), da1, g.d_b1.data(), ws);     // dz1, dB1 = Σ dz1
    product(ctx, s.dtype, hidden, k, t, da1, true, n.normed.data(), g.d_w1.data());  // dW1 = dz1ᵀ·n
    void* dn = n.normed.data();  // likewise the normalised input once dW1 is queued
    product(ctx, s.dtype, t, k, hidden, da1, false, p.w1.data(), dn);  // dn = dz1·W1
    layernorm_backward(ctx, s, x, p, n, dn, g, ws);
  });
  return g;
}

}  // namespace r1v

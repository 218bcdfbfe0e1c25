#include "norms.h"

#include <cmath>

#include "../kernels/norms.h"
#include "dispatch.h"
#include "fill.h"
#include "op_checks.h"

namespace r1v {

namespace {

// x is [N, D] or [B, S, D] with D ≥ 1; weight (and bias) [D] of x's dtype and engine.
NormShape check_x_and_params(const char* op, const Tensor& x, const Tensor& weight, const Tensor* bias) {
  check_live(op, x, "x");
  check_live(op, weight, "weight");
  if (bias) check_live(op, *bias, "bias");
  check_same_engine(op, weight, "weight", x, "x");
  if (bias) check_same_engine(op, *bias, "bias", x, "x");
  check_compute_dtype(op, x, "x");
  check_same_dtype(op, weight, "weight", x, "x");
  if (bias) check_same_dtype(op, *bias, "bias", x, "x");
  if (x.ndim() != 2 && x.ndim() != 3)
    fail(ErrorCode::Shape, op, ": x must be 2-D [N, D] or 3-D [B, S, D], got shape ", shape_str(x.shape()));
  const int64_t d = x.dim(-1);
  if (d == 0) fail(ErrorCode::Shape, op, ": x must have D ≥ 1 features, got ", shape_str(x.shape()));
  check_shape(op, weight, "weight", {d});
  if (bias) check_shape(op, *bias, "bias", {d});
  NormShape s;
  s.dtype = x.dtype();
  s.cols = d;
  s.rows = x.numel() / d;
  return s;
}

float check_eps(const char* op, double eps) {
  const float e = static_cast<float>(eps);  // the kernels add it in f32: it must survive the rounding
  if (!(e > 0) || !std::isfinite(e))
    fail(ErrorCode::Argument, op, ": eps must be a positive finite number (as f32), got ", eps);
  return e;
}

Shape stats_shape(const Tensor& x) { return Shape(x.shape().begin(), x.shape().end() - 1); }

void check_stats(const char* op, const Tensor& t, const char* name, const Tensor& x) {
  check_live(op, t, name);
  check_same_engine(op, t, name, x, "x");
  check_dtype(op, t, name, DType::F32);
  check_shape(op, t, name, stats_shape(x));
}

void check_dy(const char* op, const Tensor& dy, const Tensor& x) {
  check_live(op, dy, "dY");
  check_same_engine(op, dy, "dY", x, "x");
  check_same_dtype(op, dy, "dY", x, "x");
  check_shape(op, dy, "dY", x.shape());
}

void forward(const char* op, Context& ctx, const NormShape& s, const Tensor& x, const Tensor& weight, const void* bias,
             const Tensor& y, float* mean, float* rstd) {
  if (s.rows == 0) return;
  on_device(
      ctx, op, [&] { cpu::norm_forward(s, x.data(), weight.data(), bias, y.data(), mean, rstd); },
      [&](Stream& stream) {
        cuda::norm_forward(s, x.data(), weight.data(), bias, y.data(), mean, rstd, stream.cuda_stream());
      });
}

void backward(const char* op, Context& ctx, const NormShape& s, const Tensor& x, const Tensor& weight,
              const float* mean, const Tensor& rstd, const Tensor& dy, const Tensor& dx, const Tensor& d_weight,
              const Tensor* d_bias) {
  if (s.rows == 0) {  // sums over no rows
    fill_from_work(op, d_weight, 0.0);
    if (d_bias) fill_from_work(op, *d_bias, 0.0);
    return;
  }
  Tensor workspace = Tensor::empty(ctx.shared_from_this(), {norm_workspace_floats(s, d_bias ? 2 : 1)}, DType::F32);
  auto* ws = static_cast<float*>(workspace.data());
  void* db = d_bias ? d_bias->data() : nullptr;
  const auto* r = static_cast<const float*>(rstd.data());
  on_device(
      ctx, op,
      [&] { cpu::norm_backward(s, x.data(), weight.data(), mean, r, dy.data(), dx.data(), d_weight.data(), db, ws); },
      [&](Stream& stream) {
        cuda::norm_backward(s, x.data(), weight.data(), mean, r, dy.data(), dx.data(), d_weight.data(), db, ws,
                            stream.cuda_stream());
      });
}

}  // namespace

RmsNormResult rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  const char* op = "rmsNorm";
  NormShape s = check_x_and_params(op, x, weight, nullptr);
  s.eps = check_eps(op, eps);
  auto ctx = x.context();
  RmsNormResult r{Tensor::empty(ctx, x.shape(), s.dtype), Tensor::empty(ctx, stats_shape(x), DType::F32)};
  enqueue_op(ctx, {x, weight}, {r.y, r.rstd}, [op, x, weight, r, s] {
    forward(op, *x.context(), s, x, weight, nullptr, r.y, nullptr, static_cast<float*>(r.rstd.data()));
  });
  return r;
}

LayerNormResult layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const char* op = "layerNorm";
  NormShape s = check_x_and_params(op, x, weight, &bias);
  s.eps = check_eps(op, eps);
  auto ctx = x.context();
  LayerNormResult r{Tensor::empty(ctx, x.shape(), s.dtype), Tensor::empty(ctx, stats_shape(x), DType::F32),
                    Tensor::empty(ctx, stats_shape(x), DType::F32)};
  enqueue_op(ctx, {x, weight, bias}, {r.y, r.mean, r.rstd}, [op, x, weight, bias, r, s] {
    forward(op, *x.context(), s, x, weight, bias.data(), r.y, static_cast<float*>(r.mean.data()),
            static_cast<float*>(r.rstd.data()));
  });
  return r;
}

RmsNormGradients rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& dy) {
  const char* op = "rmsNormBackward";
  const NormShape s = check_x_and_params(op, x, weight, nullptr);
  check_stats(op, rstd, "rstd", x);
  check_dy(op, dy, x);
  auto ctx = x.context();
  RmsNormGradients g{Tensor::empty(ctx, x.shape(), s.dtype), Tensor::empty(ctx, weight.shape(), s.dtype)};
  enqueue_op(ctx, {x, weight, rstd, dy}, {g.dx, g.d_weight}, [op, x, weight, rstd, dy, g, s] {
    backward(op, *x.context(), s, x, weight, nullptr, rstd, dy, g.dx, g.d_weight, nullptr);
  });
  return g;
}

LayerNormGradients layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                       const Tensor& dy) {
  const char* op = "layerNormBackward";
  const NormShape s = check_x_and_params(op, x, weight, nullptr);
  check_stats(op, mean, "mean", x);
  check_stats(op, rstd, "rstd", x);
  check_dy(op, dy, x);
  auto ctx = x.context();
  LayerNormGradients g{Tensor::empty(ctx, x.shape(), s.dtype), Tensor::empty(ctx, weight.shape(), s.dtype),
                       Tensor::empty(ctx, weight.shape(), s.dtype)};
  enqueue_op(ctx, {x, weight, mean, rstd, dy}, {g.dx, g.d_weight, g.d_bias}, [op, x, weight, mean, rstd, dy, g, s] {
    backward(op, *x.context(), s, x, weight, static_cast<const float*>(mean.data()), rstd, dy, g.dx, g.d_weight,
             &g.d_bias);
  });
  return g;
}

}  // namespace r1v

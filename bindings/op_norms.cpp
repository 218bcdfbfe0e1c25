// rmsNorm(x, weight, { eps? }), rmsNormBackward(x, weight, rstd, dY),
// layerNorm(x, weight, bias, { eps? }), layerNormBackward(x, weight, mean, rstd, dY).
#include "../native/ops/norms.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

double read_eps(const Napi::CallbackInfo& info, size_t index, const char* fn, double default_eps) {
  std::string name = concat(fn, ": options");
  auto options = read_options(info.Length() > index ? info[index] : info.Env().Undefined(), name.c_str());
  check_option_keys(options, {"eps"}, fn);
  return read_number_option(options, "eps", fn).value_or(default_eps);
}

const Tensor& arg(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name) {
  std::string full = concat(fn, ": ", name);
  return TensorHandle::unwrap(info[index], full.c_str());
}

Napi::Value rms_norm_op(const Napi::CallbackInfo& info) {
  const char* fn = "rmsNorm";
  expect_count(info, 2, 3, fn);
  RmsNormResult r = rms_norm(arg(info, 0, fn, "x"), arg(info, 1, fn, "weight"), read_eps(info, 2, fn, 1e-6));
  return tensor_object(info.Env(), {{"y", r.y}, {"rstd", r.rstd}});
}

Napi::Value rms_norm_backward_op(const Napi::CallbackInfo& info) {
  const char* fn = "rmsNormBackward";
  expect_count(info, 4, 4, fn);
  RmsNormGradients g = rms_norm_backward(arg(info, 0, fn, "x"), arg(info, 1, fn, "weight"), arg(info, 2, fn, "rstd"),
                                         arg(info, 3, fn, "dY"));
  return tensor_object(info.Env(), {{"dx", g.dx}, {"dWeight", g.d_weight}});
}

Napi::Value layer_norm_op(const Napi::CallbackInfo& info) {
  const char* fn = "layerNorm";
  expect_count(info, 3, 4, fn);
  LayerNormResult r = layer_norm(arg(info, 0, fn, "x"), arg(info, 1, fn, "weight"), arg(info, 2, fn, "bias"),
                                 read_eps(info, 3, fn, 1e-5));
  return tensor_object(info.Env(), {{"y", r.y}, {"mean", r.mean}, {"rstd", r.rstd}});
}

Napi::Value layer_norm_backward_op(const Napi::CallbackInfo& info) {
  const char* fn = "layerNormBackward";
  expect_count(info, 5, 5, fn);
  LayerNormGradients g =
      layer_norm_backward(arg(info, 0, fn, "x"), arg(info, 1, fn, "weight"), arg(info, 2, fn, "mean"),
                          arg(info, 3, fn, "rstd"), arg(info, 4, fn, "dY"));
  return tensor_object(info.Env(), {{"dx", g.dx}, {"dWeight", g.d_weight}, {"dBias", g.d_bias}});
}

}  // namespace

void register_norms_ops(Napi::Env env, Napi::Object exports) {
  export_op<rms_norm_op>(env, exports, "rmsNorm");
  export_op<rms_norm_backward_op>(env, exports, "rmsNormBackward");
  export_op<layer_norm_op>(env, exports, "layerNorm");
  export_op<layer_norm_backward_op>(env, exports, "layerNormBackward");
}

}  // namespace r1v::bindings

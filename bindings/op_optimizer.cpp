// sumOfSquares(tensors)
// adamwStep(groups: [{ param, grad, m, v, master?, weightDecay? }], { lr, step, beta1?, beta2?, eps?,
//           weightDecay?, gradScale? (number or tensor) })
#include <string>
#include <vector>

#include "../native/ops/adamw.h"
#include "../native/ops/sum_of_squares.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

constexpr const char* kAdamW = "adamwStep";

Napi::Array read_array(const Napi::Value& v, const char* name) {
  if (!v.IsArray()) fail(ErrorCode::Argument, name, " must be an array");
  return v.As<Napi::Array>();
}

Napi::Value sum_of_squares(const Napi::CallbackInfo& info) {
  expect_count(info, 1, 1, "sumOfSquares");
  Napi::Array list = read_array(info[0], "sumOfSquares: tensors");
  std::vector<Tensor> tensors;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    std::string name = concat("sumOfSquares: tensors[", i, "]");
    tensors.push_back(TensorHandle::unwrap(list.Get(i), name.c_str()));
  }
  return TensorHandle::wrap(info.Env(), r1v::sum_of_squares(tensors));
}

AdamWGroup read_group(const Napi::Value& v, uint32_t i) {
  std::string at = concat(kAdamW, ": groups[", i, "]");
  if (!v.IsObject() || v.IsArray()) fail(ErrorCode::Argument, at, " must be an object { param, grad, m, v, master? }");
  std::optional<Napi::Object> object = v.As<Napi::Object>();
  check_option_keys(object, {"param", "grad", "m", "v", "master", "weightDecay"}, at.c_str());
  auto tensor = [&](const char* key) {
    std::string name = concat(at, ".", key);
    return TensorHandle::unwrap(object->Get(key), name.c_str());
  };
  AdamWGroup g{tensor("param"), tensor("grad"), tensor("m"), tensor("v"), Tensor(), std::nullopt};
  if (!object->Get("master").IsUndefined()) g.master = tensor("master");
  g.weight_decay = read_number_option(object, "weightDecay", at.c_str());
  return g;
}

AdamWOptions read_adamw_options(const Napi::Value& v) {
  auto options = read_options(v, concat(kAdamW, ": options").c_str());
  if (!options) fail(ErrorCode::Argument, kAdamW, ": options { lr, step, ... } are required");
  check_option_keys(options, {"lr", "beta1", "beta2", "eps", "weightDecay", "step", "gradScale"}, kAdamW);
  AdamWOptions o;
  auto required = [&](const char* key) {
    auto value = read_number_option(options, key, kAdamW);
    if (!value) fail(ErrorCode::Argument, kAdamW, ": option ", key, " is required");
    return *value;
  };
  o.lr = required("lr");
  o.step = required("step");
  o.beta1 = read_number_option(options, "beta1", kAdamW).value_or(o.beta1);
  o.beta2 = read_number_option(options, "beta2", kAdamW).value_or(o.beta2);
  o.eps = read_number_option(options, "eps", kAdamW).value_or(o.eps);
  o.weight_decay = read_number_option(options, "weightDecay", kAdamW).value_or(o.weight_decay);
  Napi::Value scale = options->Get("gradScale");
  if (scale.IsNumber()) {
    o.grad_scale = read_number_option(options, "gradScale", kAdamW).value_or(1.0);
  } else if (!scale.IsUndefined()) {
    o.grad_scale_tensor = TensorHandle::unwrap(scale, concat(kAdamW, ": gradScale").c_str());
  }
  return o;
}

Napi::Value adamw_step(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, kAdamW);
  Napi::Array list = read_array(info[0], concat(kAdamW, ": groups").c_str());
  std::vector<AdamWGroup> groups;
  for (uint32_t i = 0; i < list.Length(); ++i) groups.push_back(read_group(list.Get(i), i));
  r1v::adamw_step(groups, read_adamw_options(info[1]));
  return info.Env().Undefined();
}

}  // namespace

void register_optimizer_ops(Napi::Env env, Napi::Object exports) {
  export_op<sum_of_squares>(env, exports, "sumOfSquares");
  export_op<adamw_step>(env, exports, "adamwStep");
}

}  // namespace r1v::bindings

// matmul(a, b, { transA?, transB?, bias?, activation? }?)
#include "../native/ops/matmul.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

Napi::Value matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 2, 3, "matmul");
  const Tensor& a = TensorHandle::unwrap(info[0], "matmul: a");
  const Tensor& b = TensorHandle::unwrap(info[1], "matmul: b");
  auto options = read_options(info.Length() > 2 ? info[2] : env.Undefined(), "matmul: options");
  check_option_keys(options, {"transA", "transB", "bias", "activation"}, "matmul");
  MatmulOptions o;
  o.trans_a = read_bool_option(options, "transA", "matmul", false);
  o.trans_b = read_bool_option(options, "transB", "matmul", false);
  if (auto bias = read_tensor_option(options, "bias", "matmul")) o.bias = *bias;
  if (auto act = read_string_option(options, "activation", "matmul")) {
    if (*act == "gelu") {
      o.activation = Activation::Gelu;
    } else if (*act == "silu") {
      o.activation = Activation::Silu;
    } else if (*act != "none") {
      fail(ErrorCode::Argument, "matmul: activation must be 'none', 'gelu' or 'silu', got '", *act, "'");
    }
  }
  return TensorHandle::wrap(env, r1v::matmul(a, b, o));
}

}  // namespace

void register_matmul_ops(Napi::Env env, Napi::Object exports) { export_op<matmul>(env, exports, "matmul"); }

std::optional<Tensor> read_tensor_option(const std::optional<Napi::Object>& options, const char* key, const char* fn) {
  if (!options) return std::nullopt;
  Napi::Value v = options->Get(key);
  if (v.IsUndefined()) return std::nullopt;
  std::string name = concat(fn, ": option ", key);
  return TensorHandle::unwrap(v, name.c_str());
}

Napi::Object tensor_object(Napi::Env env, std::initializer_list<std::pair<const char*, Tensor>> fields) {
  Napi::Object out = Napi::Object::New(env);
  for (const auto& [name, t] : fields) out.Set(name, TensorHandle::wrap(env, t));
  return out;
}

}  // namespace r1v::bindings

// connector(x, p, { eps? }) and connectorBackward(x, p, dY, { eps? }); p = { lnWeight, lnBias, w1, b1, w2, b2 }.
#include "../native/ops/connector.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

ConnectorParams read_params(const Napi::Value& v, const char* fn) {
  std::string name = concat(fn, ": p");
  if (!v.IsObject() || v.IsArray() || v.IsFunction()) fail(ErrorCode::Argument, name, " must be an object");
  Napi::Object o = v.As<Napi::Object>();
  check_option_keys(o, {"lnWeight", "lnBias", "w1", "b1", "w2", "b2"}, name.c_str());
  auto field = [&](const char* key) {
    std::string arg = concat(fn, ": p.", key);
    return TensorHandle::unwrap(o.Get(key), arg.c_str());
  };
  return ConnectorParams{field("lnWeight"), field("lnBias"), field("w1"), field("b1"), field("w2"), field("b2")};
}

ConnectorOptions read_connector_options(const Napi::Value& v, const char* fn) {
  std::string name = concat(fn, ": options");
  auto options = read_options(v, name.c_str());
  check_option_keys(options, {"eps"}, fn);
  ConnectorOptions o;
  if (auto eps = read_number_option(options, "eps", fn)) o.eps = *eps;
  return o;
}

Napi::Value connector(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 2, 3, "connector");
  const Tensor& x = TensorHandle::unwrap(info[0], "connector: x");
  ConnectorParams p = read_params(info[1], "connector");
  ConnectorOptions o = read_connector_options(info.Length() > 2 ? info[2] : env.Undefined(), "connector");
  return TensorHandle::wrap(env, connector_forward(x, p, o));
}

Napi::Value connector_backward_op(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "connectorBackward";
  expect_count(info, 3, 4, fn);
  const Tensor& x = TensorHandle::unwrap(info[0], "connectorBackward: x");
  ConnectorParams p = read_params(info[1], fn);
  const Tensor& dy = TensorHandle::unwrap(info[2], "connectorBackward: dY");
  ConnectorOptions o = read_connector_options(info.Length() > 3 ? info[3] : env.Undefined(), fn);
  ConnectorGradients g = connector_backward(x, p, dy, o);
  return tensor_object(env, {{"dx", g.dx},
                             {"dLnWeight", g.d_ln_weight},
                             {"dLnBias", g.d_ln_bias},
                             {"dW1", g.d_w1},
                             {"dB1", g.d_b1},
                             {"dW2", g.d_w2},
                             {"dB2", g.d_b2}});
}

}  // namespace

void register_connector_ops(Napi::Env env, Napi::Object exports) {
  export_op<connector>(env, exports, "connector");
  export_op<connector_backward_op>(env, exports, "connectorBackward");
}

}  // namespace r1v::bindings

// rope(x, positions, { theta }), ropeBackward(dY, positions, { theta })
// swiglu(gate, up), swigluBackward(gate, up, dY)
// gelu(z), geluBackward(z, dY)
// embedding(ids, table), embeddingBackward(ids, dY, V)
#include "../native/ops/embedding.h"
#include "../native/ops/gelu.h"
#include "../native/ops/rope.h"
#include "../native/ops/swiglu.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

RopeOptions read_rope_options(const Napi::Value& v, const char* fn) {
  auto options = read_options(v, concat(fn, ": options").c_str());
  check_option_keys(options, {"theta"}, fn);
  auto theta = read_number_option(options, "theta", fn);
  if (!theta) fail(ErrorCode::Argument, fn, ": options.theta is required (the model's rope_theta)");
  return {*theta};
}

Napi::Value rope(const Napi::CallbackInfo& info) {
  expect_count(info, 3, 3, "rope");
  const Tensor& x = TensorHandle::unwrap(info[0], "rope: x");
  const Tensor& positions = TensorHandle::unwrap(info[1], "rope: positions");
  return TensorHandle::wrap(info.Env(), r1v::rope(x, positions, read_rope_options(info[2], "rope")));
}

Napi::Value rope_backward(const Napi::CallbackInfo& info) {
  expect_count(info, 3, 3, "ropeBackward");
  const Tensor& dy = TensorHandle::unwrap(info[0], "ropeBackward: dY");
  const Tensor& positions = TensorHandle::unwrap(info[1], "ropeBackward: positions");
  return TensorHandle::wrap(info.Env(),
                            r1v::rope_backward(dy, positions, read_rope_options(info[2], "ropeBackward")));
}

Napi::Value swiglu(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "swiglu");
  const Tensor& gate = TensorHandle::unwrap(info[0], "swiglu: gate");
  const Tensor& up = TensorHandle::unwrap(info[1], "swiglu: up");
  return TensorHandle::wrap(info.Env(), r1v::swiglu(gate, up));
}

Napi::Value swiglu_backward(const Napi::CallbackInfo& info) {
  expect_count(info, 3, 3, "swigluBackward");
  const Tensor& gate = TensorHandle::unwrap(info[0], "swigluBackward: gate");
  const Tensor& up = TensorHandle::unwrap(info[1], "swigluBackward: up");
  const Tensor& dy = TensorHandle::unwrap(info[2], "swigluBackward: dY");
  SwigluGradients g = r1v::swiglu_backward(gate, up, dy);
  return tensor_object(info.Env(), {{"dGate", g.d_gate}, {"dUp", g.d_up}});
}

Napi::Value gelu(const Napi::CallbackInfo& info) {
  expect_count(info, 1, 1, "gelu");
  return TensorHandle::wrap(info.Env(), r1v::gelu(TensorHandle::unwrap(info[0], "gelu: z")));
}

Napi::Value gelu_backward(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "geluBackward");
  const Tensor& z = TensorHandle::unwrap(info[0], "geluBackward: z");
  const Tensor& dy = TensorHandle::unwrap(info[1], "geluBackward: dY");
  return TensorHandle::wrap(info.Env(), r1v::gelu_backward(z, dy));
}

Napi::Value embedding(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "embedding");
  const Tensor& ids = TensorHandle::unwrap(info[0], "embedding: ids");
  const Tensor& table = TensorHandle::unwrap(info[1], "embedding: table");
  return TensorHandle::wrap(info.Env(), r1v::embedding(ids, table));
}

Napi::Value embedding_backward(const Napi::CallbackInfo& info) {
  expect_count(info, 3, 3, "embeddingBackward");
  const Tensor& ids = TensorHandle::unwrap(info[0], "embeddingBackward: ids");
  const Tensor& dy = TensorHandle::unwrap(info[1], "embeddingBackward: dY");
  const uint64_t vocab = read_index(info[2], "embeddingBackward: V");
  return TensorHandle::wrap(info.Env(), r1v::embedding_backward(ids, dy, static_cast<int64_t>(vocab)));
}

}  // namespace

void register_elementwise_ops(Napi::Env env, Napi::Object exports) {
  export_op<rope>(env, exports, "rope");
  export_op<rope_backward>(env, exports, "ropeBackward");
  export_op<swiglu>(env, exports, "swiglu");
  export_op<swiglu_backward>(env, exports, "swigluBackward");
  export_op<gelu>(env, exports, "gelu");
  export_op<gelu_backward>(env, exports, "geluBackward");
  export_op<embedding>(env, exports, "embedding");
  export_op<embedding_backward>(env, exports, "embeddingBackward");
}

}  // namespace r1v::bindings

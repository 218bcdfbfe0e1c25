// reshape(x, shape), add(a, b), scale(x, alpha), scaleChannels(x, s), scaleChannelsBackward(x, s, dY),
// sumRows(x), gatherRows(x, idx), scatterAddRows(src, idx, rows), scatterRows(base, idx, src),
// writeRows(dst, idx, src), cast(x, dtype), copy(x)
#include <cmath>

#include "../native/ops/broadcast_arith.h"
#include "../native/ops/cast.h"
#include "../native/ops/gather_rows.h"
#include "../native/ops/reshape.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

// An array of at most 8 integer entries, each ≥ 0 or -1 (checked further by the op).
std::vector<int64_t> read_reshape_dims(const Napi::Value& v, const char* name) {
  if (!v.IsArray()) fail(ErrorCode::Argument, name, " must be an array of dimensions");
  Napi::Array array = v.As<Napi::Array>();
  const uint32_t n = array.Length();
  if (n > 8) fail(ErrorCode::Shape, name, " has ", n, " dimensions; at most 8 are supported");
  std::vector<int64_t> dims(n);
  for (uint32_t i = 0; i < n; ++i) {
    Napi::Value dim = array.Get(i);
    if (!dim.IsNumber()) fail(ErrorCode::Shape, name, "[", i, "] must be a number");
    const double d = dim.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d < -1 || d != std::floor(d) || d > 9007199254740991.0)
      fail(ErrorCode::Shape, name, "[", i, "] = ", d, " is not a non-negative integer or -1");
    dims[i] = static_cast<int64_t>(d);
  }
  return dims;
}

Napi::Value reshape(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "reshape");
  const Tensor& x = TensorHandle::unwrap(info[0], "reshape: x");
  return TensorHandle::wrap(info.Env(), r1v::reshape(x, read_reshape_dims(info[1], "reshape: shape")));
}

Napi::Value add(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "add");
  const Tensor& a = TensorHandle::unwrap(info[0], "add: a");
  const Tensor& b = TensorHandle::unwrap(info[1], "add: b");
  return TensorHandle::wrap(info.Env(), r1v::add(a, b));
}

Napi::Value scale(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "scale");
  const Tensor& x = TensorHandle::unwrap(info[0], "scale: x");
  return TensorHandle::wrap(info.Env(), r1v::scale(x, read_number(info[1], "scale: alpha")));
}

Napi::Value scale_channels(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "scaleChannels");
  const Tensor& x = TensorHandle::unwrap(info[0], "scaleChannels: x");
  const Tensor& s = TensorHandle::unwrap(info[1], "scaleChannels: s");
  return TensorHandle::wrap(info.Env(), r1v::scale_channels(x, s));
}

Napi::Value scale_channels_backward(const Napi::CallbackInfo& info) {
  expect_count(info, 3, 3, "scaleChannelsBackward");
  const Tensor& x = TensorHandle::unwrap(info[0], "scaleChannelsBackward: x");
  const Tensor& s = TensorHandle::unwrap(info[1], "scaleChannelsBackward: s");
  const Tensor& dy = TensorHandle::unwrap(info[2], "scaleChannelsBackward: dY");
  ScaleChannelsGradients g = r1v::scale_channels_backward(x, s, dy);
  return tensor_object(info.Env(), {{"dx", g.dx}, {"dScale", g.d_scale}});
}

Napi::Value sum_rows(const Napi::CallbackInfo& info) {
  expect_count(info, 1, 1, "sumRows");
  return TensorHandle::wrap(info.Env(), r1v::sum_rows(TensorHandle::unwrap(info[0], "sumRows: x")));
}

Napi::Value gather_rows(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "gatherRows");
  const Tensor& x = TensorHandle::unwrap(info[0], "gatherRows: x");
  const Tensor& idx = TensorHandle::unwrap(info[1], "gatherRows: idx");
  return TensorHandle::wrap(info.Env(), r1v::gather_rows(x, idx));
}

Napi::Value scatter_add_rows(const Napi::CallbackInfo& info) {
  expect_count(info, 3, 3, "scatterAddRows");
  const Tensor& src = TensorHandle::unwrap(info[0], "scatterAddRows: src");
  const Tensor& idx = TensorHandle::unwrap(info[1], "scatterAddRows: idx");
  const uint64_t rows = read_index(info[2], "scatterAddRows: rows");
  return TensorHandle::wrap(info.Env(), r1v::scatter_add_rows(src, idx, static_cast<int64_t>(rows)));
}

Napi::Value scatter_rows(const Napi::CallbackInfo& info) {
  expect_count(info, 3, 3, "scatterRows");
  const Tensor& base = TensorHandle::unwrap(info[0], "scatterRows: base");
  const Tensor& idx = TensorHandle::unwrap(info[1], "scatterRows: idx");
  const Tensor& src = TensorHandle::unwrap(info[2], "scatterRows: src");
  return TensorHandle::wrap(info.Env(), r1v::scatter_rows(base, idx, src));
}

Napi::Value write_rows(const Napi::CallbackInfo& info) {
  expect_count(info, 3, 3, "writeRows");
  const Tensor& dst = TensorHandle::unwrap(info[0], "writeRows: dst");
  const Tensor& idx = TensorHandle::unwrap(info[1], "writeRows: idx");
  const Tensor& src = TensorHandle::unwrap(info[2], "writeRows: src");
  r1v::write_rows(dst, idx, src);
  return info.Env().Undefined();
}

Napi::Value cast(const Napi::CallbackInfo& info) {
  expect_count(info, 2, 2, "cast");
  const Tensor& x = TensorHandle::unwrap(info[0], "cast: x");
  return TensorHandle::wrap(info.Env(), r1v::cast(x, read_dtype(info[1], "cast: dtype")));
}

Napi::Value copy(const Napi::CallbackInfo& info) {
  expect_count(info, 1, 1, "copy");
  return TensorHandle::wrap(info.Env(), r1v::copy(TensorHandle::unwrap(info[0], "copy: x")));
}

}  // namespace

void register_rows_ops(Napi::Env env, Napi::Object exports) {
  export_op<reshape>(env, exports, "reshape");
  export_op<add>(env, exports, "add");
  export_op<scale>(env, exports, "scale");
  export_op<scale_channels>(env, exports, "scaleChannels");
  export_op<scale_channels_backward>(env, exports, "scaleChannelsBackward");
  export_op<sum_rows>(env, exports, "sumRows");
  export_op<gather_rows>(env, exports, "gatherRows");
  export_op<scatter_add_rows>(env, exports, "scatterAddRows");
  export_op<scatter_rows>(env, exports, "scatterRows");
  export_op<write_rows>(env, exports, "writeRows");
  export_op<cast>(env, exports, "cast");
  export_op<copy>(env, exports, "copy");
}

}  // namespace r1v::bindings

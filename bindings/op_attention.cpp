// attention(q, k, v, { causal?, scale?, cuSeqlensQ?, cuSeqlensK?, seqUsedK? }?)
// attentionBackward(q, k, v, out, lse, dOut, options?)
#include "../native/ops/attention.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

AttentionOptions read_attention_options(const Napi::Value& value, const char* fn) {
  auto options = read_options(value, concat(fn, ": options").c_str());
  check_option_keys(options, {"causal", "scale", "cuSeqlensQ", "cuSeqlensK", "seqUsedK"}, fn);
  AttentionOptions o;
  o.causal = read_bool_option(options, "causal", fn, false);
  if (auto scale = read_number_option(options, "scale", fn)) o.scale = static_cast<float>(*scale);
  o.cu_seqlens_q = read_int32_array_option(options, "cuSeqlensQ", fn);
  o.cu_seqlens_k = read_int32_array_option(options, "cuSeqlensK", fn);
  o.seq_used_k = read_int32_array_option(options, "seqUsedK", fn);
  return o;
}

Napi::Value attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 3, 4, "attention");
  const Tensor& q = TensorHandle::unwrap(info[0], "attention: q");
  const Tensor& k = TensorHandle::unwrap(info[1], "attention: k");
  const Tensor& v = TensorHandle::unwrap(info[2], "attention: v");
  AttentionOptions o = read_attention_options(info.Length() > 3 ? info[3] : env.Undefined(), "attention");
  AttentionResult r = attention_forward(q, k, v, o);
  return tensor_object(env, {{"out", r.out}, {"lse", r.lse}});
}

Napi::Value attention_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 6, 7, "attentionBackward");
  const Tensor& q = TensorHandle::unwrap(info[0], "attentionBackward: q");
  const Tensor& k = TensorHandle::unwrap(info[1], "attentionBackward: k");
  const Tensor& v = TensorHandle::unwrap(info[2], "attentionBackward: v");
  const Tensor& out = TensorHandle::unwrap(info[3], "attentionBackward: out");
  const Tensor& lse = TensorHandle::unwrap(info[4], "attentionBackward: lse");
  const Tensor& d_out = TensorHandle::unwrap(info[5], "attentionBackward: dOut");
  AttentionOptions o =
      read_attention_options(info.Length() > 6 ? info[6] : env.Undefined(), "attentionBackward");
  AttentionGradients g = r1v::attention_backward(q, k, v, out, lse, d_out, o);
  return tensor_object(env, {{"dq", g.dq}, {"dk", g.dk}, {"dv", g.dv}});
}

}  // namespace

void register_attention_ops(Napi::Env env, Napi::Object exports) {
  export_op<attention>(env, exports, "attention");
  export_op<attention_backward>(env, exports, "attentionBackward");
}

}  // namespace r1v::bindings

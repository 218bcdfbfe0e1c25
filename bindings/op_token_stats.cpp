// tokenStats(logits, targets, { temperature? }?)
// tokenStatsBackward(logits, targets, dLogprobs, dEntropy, { temperature? }?)
// linearTokenStats(hidden, weight, targets, { temperature?, chunk? }?)
// linearTokenStatsBackward(hidden, weight, targets, dLogprobs, dEntropy, { temperature?, chunk? }?)
#include <cmath>

#include "../native/ops/linear_token_stats.h"
#include "../native/ops/token_stats.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

float read_temperature(const std::optional<Napi::Object>& options, const char* fn) {
  return static_cast<float>(read_number_option(options, "temperature", fn).value_or(1.0));
}

TokenStatsOptions read_token_stats_options(const Napi::Value& v, const char* fn) {
  auto options = read_options(v, concat(fn, ": options").c_str());
  check_option_keys(options, {"temperature"}, fn);
  return {read_temperature(options, fn)};
}

LinearTokenStatsOptions read_linear_options(const Napi::Value& v, const char* fn) {
  auto options = read_options(v, concat(fn, ": options").c_str());
  check_option_keys(options, {"temperature", "chunk"}, fn);
  LinearTokenStatsOptions o;
  o.temperature = read_temperature(options, fn);
  if (auto chunk = read_number_option(options, "chunk", fn)) {
    if (*chunk < 1 || *chunk > 9007199254740991.0 || std::floor(*chunk) != *chunk)
      fail(ErrorCode::Argument, fn, ": chunk must be a positive integer, got ", *chunk);
    o.chunk = static_cast<int64_t>(*chunk);
  }
  return o;
}

Napi::Value token_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 2, 3, "tokenStats");
  const Tensor& logits = TensorHandle::unwrap(info[0], "tokenStats: logits");
  const Tensor& targets = TensorHandle::unwrap(info[1], "tokenStats: targets");
  auto o = read_token_stats_options(info.Length() > 2 ? info[2] : env.Undefined(), "tokenStats");
  TokenStatsResult r = r1v::token_stats(logits, targets, o);
  return tensor_object(env, {{"logprobs", r.logprobs}, {"entropy", r.entropy}});
}

Napi::Value token_stats_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 4, 5, "tokenStatsBackward");
  const Tensor& logits = TensorHandle::unwrap(info[0], "tokenStatsBackward: logits");
  const Tensor& targets = TensorHandle::unwrap(info[1], "tokenStatsBackward: targets");
  const Tensor& d_logprobs = TensorHandle::unwrap(info[2], "tokenStatsBackward: dLogprobs");
  const Tensor& d_entropy = TensorHandle::unwrap(info[3], "tokenStatsBackward: dEntropy");
  auto o = read_token_stats_options(info.Length() > 4 ? info[4] : env.Undefined(), "tokenStatsBackward");
  return TensorHandle::wrap(env, r1v::token_stats_backward(logits, targets, d_logprobs, d_entropy, o));
}

Napi::Value linear_token_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 3, 4, "linearTokenStats");
  const Tensor& hidden = TensorHandle::unwrap(info[0], "linearTokenStats: hidden");
  const Tensor& weight = TensorHandle::unwrap(info[1], "linearTokenStats: weight");
  const Tensor& targets = TensorHandle::unwrap(info[2], "linearTokenStats: targets");
  auto o = read_linear_options(info.Length() > 3 ? info[3] : env.Undefined(), "linearTokenStats");
  TokenStatsResult r = r1v::linear_token_stats(hidden, weight, targets, o);
  return tensor_object(env, {{"logprobs", r.logprobs}, {"entropy", r.entropy}});
}

Napi::Value linear_token_stats_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "linearTokenStatsBackward";
  expect_count(info, 5, 6, fn);
  const Tensor& hidden = TensorHandle::unwrap(info[0], "linearTokenStatsBackward: hidden");
  const Tensor& weight = TensorHandle::unwrap(info[1], "linearTokenStatsBackward: weight");
  const Tensor& targets = TensorHandle::unwrap(info[2], "linearTokenStatsBackward: targets");
  const Tensor& d_logprobs = TensorHandle::unwrap(info[3], "linearTokenStatsBackward: dLogprobs");
  const Tensor& d_entropy = TensorHandle::unwrap(info[4], "linearTokenStatsBackward: dEntropy");
  auto o = read_linear_options(info.Length() > 5 ? info[5] : env.Undefined(), fn);
  LinearTokenStatsGradients g = r1v::linear_token_stats_backward(hidden, weight, targets, d_logprobs, d_entropy, o);
  return tensor_object(env, {{"dHidden", g.d_hidden}, {"dWeight", g.d_weight}});
}

}  // namespace

void register_token_stats_ops(Napi::Env env, Napi::Object exports) {
  export_op<token_stats>(env, exports, "tokenStats");
  export_op<token_stats_backward>(env, exports, "tokenStatsBackward");
  export_op<linear_token_stats>(env, exports, "linearTokenStats");
  export_op<linear_token_stats_backward>(env, exports, "linearTokenStatsBackward");
}

}  // namespace r1v::bindings

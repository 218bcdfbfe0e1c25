// sampleTokens(logits, { seeds, offsets, temperature?, topK?, topP?, bannedTokenIds? })
#include <cmath>

#include "../native/ops/sample_tokens.h"
#include "args.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

namespace r1v::bindings {

namespace {

constexpr const char* kFn = "sampleTokens";
constexpr double kMaxSafeInteger = 9007199254740991.0;

// A BigUint64Array, or an array of safe non-negative integers.
std::vector<uint64_t> read_seeds(const Napi::Object& options) {
  Napi::Value v = options.Get("seeds");
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_biguint64_array) {
    auto typed = v.As<Napi::TypedArrayOf<uint64_t>>();
    return std::vector<uint64_t>(typed.Data(), typed.Data() + typed.ElementLength());
  }
  if (!v.IsArray())
    fail(ErrorCode::Argument, kFn, ": option seeds must be a BigUint64Array or an array of non-negative integers");
  Napi::Array array = v.As<Napi::Array>();
  std::vector<uint64_t> out(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value e = array.Get(i);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
    if (!(d >= 0 && d <= kMaxSafeInteger && std::floor(d) == d))
      fail(ErrorCode::Argument, kFn, ": seeds[", i, "] must be a safe non-negative integer");
    out[i] = static_cast<uint64_t>(d);
  }
  return out;
}

SampleTokensOptions read_sample_options(const Napi::Value& value) {
  auto options = read_options(value, "sampleTokens: options");
  check_option_keys(options, {"seeds", "offsets", "temperature", "topK", "topP", "bannedTokenIds"}, kFn);
  if (!options) fail(ErrorCode::Argument, kFn, ": options { seeds, offsets } are required");
  SampleTokensOptions o;
  o.seeds = read_seeds(*options);
  auto offsets = read_int32_array_option(options, "offsets", kFn);
  if (!offsets) fail(ErrorCode::Argument, kFn, ": option offsets is required (one per row)");
  o.offsets = std::move(*offsets);
  o.temperature = static_cast<float>(read_number_option(options, "temperature", kFn).value_or(1.0));
  if (auto top_k = read_number_option(options, "topK", kFn)) {
    if (std::floor(*top_k) != *top_k || *top_k > kMaxSafeInteger)
      fail(ErrorCode::Argument, kFn, ": topK must be an integer ≥ 0 (0 = off), got ", *top_k);
    o.top_k = static_cast<int64_t>(*top_k);
  }
  o.top_p = static_cast<float>(read_number_option(options, "topP", kFn).value_or(1.0));
  if (auto banned = read_int32_array_option(options, "bannedTokenIds", kFn)) o.banned = std::move(*banned);
  return o;
}

Napi::Value sample_tokens(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 2, 2, kFn);
  const Tensor& logits = TensorHandle::unwrap(info[0], "sampleTokens: logits");
  SampleTokensResult r = r1v::sample_tokens(logits, read_sample_options(info[1]));
  return tensor_object(env, {{"tokens", r.tokens}, {"logprobs", r.logprobs}, {"entropy", r.entropy}});
}

}  // namespace

void register_sampling_ops(Napi::Env env, Napi::Object exports) { export_op<sample_tokens>(env, exports, "sampleTokens"); }

}  // namespace r1v::bindings

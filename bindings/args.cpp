#include "args.h"

#include <cmath>

namespace r1v::bindings {

namespace {
constexpr double kMaxSafeInteger = 9007199254740991.0;
}

void expect_count(const Napi::CallbackInfo& info, size_t min, size_t max, const char* fn) {
  if (info.Length() < min || info.Length() > max) {
    if (min == max) fail(ErrorCode::Argument, fn, " expects ", min, " argument(s), got ", info.Length());
    fail(ErrorCode::Argument, fn, " expects ", min, " to ", max, " arguments, got ", info.Length());
  }
}

std::string read_string(const Napi::Value& v, const char* name) {
  if (!v.IsString()) fail(ErrorCode::Argument, name, " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

bool read_bool(const Napi::Value& v, const char* name) {
  if (!v.IsBoolean()) fail(ErrorCode::Argument, name, " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

double read_number(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) fail(ErrorCode::Argument, name, " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

uint64_t read_index(const Napi::Value& v, const char* name) {
  double d = read_number(v, name);
  if (!std::isfinite(d) || d < 0 || d != std::floor(d) || d > kMaxSafeInteger)
    fail(ErrorCode::Argument, name, " must be a non-negative integer, got ", d);
  return static_cast<uint64_t>(d);
}

Shape read_shape(const Napi::Value& v, const char* name) {
  if (!v.IsArray()) fail(ErrorCode::Argument, name, " must be an array of dimensions");
  Napi::Array array = v.As<Napi::Array>();
  uint32_t n = array.Length();
  if (n > 8) fail(ErrorCode::Shape, name, " has ", n, " dimensions; at most 8 are supported");
  Shape shape(n);
  for (uint32_t i = 0; i < n; ++i) {
    Napi::Value dim = array.Get(i);
    if (!dim.IsNumber()) fail(ErrorCode::Shape, name, "[", i, "] must be a number");
    double d = dim.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d < 0 || d != std::floor(d) || d > kMaxSafeInteger)
      fail(ErrorCode::Shape, name, "[", i, "] = ", d, " is not a non-negative integer");
    shape[i] = static_cast<int64_t>(d);
  }
  shape_numel(shape);  // overflow check
  return shape;
}

DType read_dtype(const Napi::Value& v, const char* name) {
  std::string s = read_string(v, name);
  DType dtype;
  if (!parse_dtype(s, &dtype)) fail(ErrorCode::DType, name, " '", s, "' is not a dtype (f32, bf16, f16, i32)");
  return dtype;
}

std::optional<Napi::Object> read_options(const Napi::Value& v, const char* name) {
  if (v.IsUndefined()) return std::nullopt;
  if (!v.IsObject() || v.IsArray() || v.IsFunction()) fail(ErrorCode::Argument, name, " must be an object");
  return v.As<Napi::Object>();
}

bool read_bool_option(const std::optional<Napi::Object>& options, const char* key, const char* fn, bool fallback) {
  if (!options) return fallback;
  Napi::Value v = options->Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) fail(ErrorCode::Argument, fn, ": option ", key, " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::optional<double> read_number_option(const std::optional<Napi::Object>& options, const char* key, const char* fn) {
  if (!options) return std::nullopt;
  Napi::Value v = options->Get(key);
  if (v.IsUndefined()) return std::nullopt;
  if (!v.IsNumber()) fail(ErrorCode::Argument, fn, ": option ", key, " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) fail(ErrorCode::Argument, fn, ": option ", key, " must be finite, got ", d);
  return d;
}

std::optional<std::string> read_string_option(const std::optional<Napi::Object>& options, const char* key,
                                              const char* fn) {
  if (!options) return std::nullopt;
  Napi::Value v = options->Get(key);
  if (v.IsUndefined()) return std::nullopt;
  if (!v.IsString()) fail(ErrorCode::Argument, fn, ": option ", key, " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::optional<std::vector<int32_t>> read_int32_array_option(const std::optional<Napi::Object>& options,
                                                            const char* key, const char* fn) {
  if (!options) return std::nullopt;
  Napi::Value v = options->Get(key);
  if (v.IsUndefined()) return std::nullopt;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    auto typed = v.As<Napi::Int32Array>();
    size_t n = typed.ElementLength();
    return n ? std::vector<int32_t>(typed.Data(), typed.Data() + n) : std::vector<int32_t>();
  }
  if (!v.IsArray()) fail(ErrorCode::Argument, fn, ": option ", key, " must be an Int32Array or an array of integers");
  Napi::Array array = v.As<Napi::Array>();
  std::vector<int32_t> out(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value e = array.Get(i);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
    if (!(d == std::floor(d)) || d < -2147483648.0 || d > 2147483647.0)
      fail(ErrorCode::Argument, fn, ": option ", key, "[", i, "] is not a 32-bit integer");
    out[i] = static_cast<int32_t>(d);
  }
  return out;
}

void check_option_keys(const std::optional<Napi::Object>& options, std::initializer_list<const char*> allowed,
                       const char* fn) {
  if (!options) return;
  Napi::Array keys = options->GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    std::string key = keys.Get(i).ToString().Utf8Value();
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (known) continue;
    std::string list;
    for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    fail(ErrorCode::Argument, fn, ": unknown option '", key, "' (known: ", list, ")");
  }
}

void check_receiver(const Napi::CallbackInfo& info, const napi_type_tag* tag, const char* cls) {
  Napi::Value self = info.This();
  if (!self.IsObject() || !self.As<Napi::Object>().CheckTypeTag(tag))
    fail(ErrorCode::Argument, cls, " method called on an object that is not a ", cls);
}

Napi::Array shape_to_js(Napi::Env env, const Shape& shape) {
  Napi::Array out = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i)
    out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(shape[i])));
  return out;
}

}  // namespace r1v::bindings

// Checked readers for JavaScript arguments. Each throws r1v::Error naming the argument,
// so bad input from JavaScript becomes an R1VError instead of undefined behaviour.
#pragma once
#include <napi.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "../native/core/tensor.h"
#include "errors.h"

namespace r1v::bindings {

void expect_count(const Napi::CallbackInfo& info, size_t min, size_t max, const char* fn);
std::string read_string(const Napi::Value& v, const char* name);
bool read_bool(const Napi::Value& v, const char* name);
double read_number(const Napi::Value& v, const char* name);
// A non-negative integer ≤ 2^53 − 1.
uint64_t read_index(const Napi::Value& v, const char* name);
// An array of non-negative integer dimensions (at most 8).
Shape read_shape(const Napi::Value& v, const char* name);
DType read_dtype(const Napi::Value& v, const char* name);
// An object or undefined; throws for anything else.
std::optional<Napi::Object> read_options(const Napi::Value& v, const char* name);
bool read_bool_option(const std::optional<Napi::Object>& options, const char* key, const char* fn, bool fallback);
// A finite number, or nullopt when the option is absent/undefined.
std::optional<double> read_number_option(const std::optional<Napi::Object>& options, const char* key, const char* fn);
std::optional<std::string> read_string_option(const std::optional<Napi::Object>& options, const char* key,
                                              const char* fn);
// An Int32Array or an array of 32-bit integers, copied; nullopt when absent/undefined.
std::optional<std::vector<int32_t>> read_int32_array_option(const std::optional<Napi::Object>& options,
                                                            const char* key, const char* fn);
// Throws naming the first key of options that is not in `allowed` (catches typos).
void check_option_keys(const std::optional<Napi::Object>& options, std::initializer_list<const char*> allowed,
                       const char* fn);

// Throws unless `this` is an object created by the named handle class (tagged at birth),
// so a method borrowed onto another object cannot reinterpret it.
void check_receiver(const Napi::CallbackInfo& info, const napi_type_tag* tag, const char* cls);

Napi::Array shape_to_js(Napi::Env env, const Shape& shape);

// Prototype methods and accessors of the handle classes are plain functions that check the
// receiver's type tag before unwrapping it: a method borrowed onto another object (say
// EngineHandle.prototype.tensor.call(x)) then fails cleanly instead of reinterpreting x.
template <typename Handle, Napi::Value (Handle::*Method)(const Napi::CallbackInfo&)>
Napi::Value call_on_handle(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    check_receiver(info, &Handle::kTag, Handle::kClassName);
    Handle* self = Handle::Unwrap(info.This().As<Napi::Object>());
    return (self->*Method)(info);
  });
}

template <typename Handle, Napi::Value (Handle::*Method)(const Napi::CallbackInfo&)>
void define_method(Napi::Env env, Napi::Object prototype, const char* name) {
  prototype.Set(name, Napi::Function::New(env, call_on_handle<Handle, Method>, name));
}

template <typename Handle, Napi::Value (Handle::*Getter)(const Napi::CallbackInfo&)>
void define_getter(Napi::Object prototype, const char* name) {
  prototype.DefineProperty(Napi::PropertyDescriptor::Accessor<call_on_handle<Handle, Getter>>(name, napi_configurable));
}

}  // namespace r1v::bindings

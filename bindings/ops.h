// Registration of the op functions, one file per op family (op_<family>.cpp): each adds
// its functions to the addon's exports. Shared helpers for reading op arguments live here.
#pragma once
#include <napi.h>

#include <initializer_list>
#include <optional>
#include <utility>

#include "../native/core/tensor.h"

namespace r1v::bindings {

void register_matmul_ops(Napi::Env env, Napi::Object exports);       // op_matmul.cpp
void register_attention_ops(Napi::Env env, Napi::Object exports);    // op_attention.cpp
void register_connector_ops(Napi::Env env, Napi::Object exports);    // op_connector.cpp
void register_token_stats_ops(Napi::Env env, Napi::Object exports);  // op_token_stats.cpp
void register_elementwise_ops(Napi::Env env, Napi::Object exports);  // op_elementwise.cpp
void register_optimizer_ops(Napi::Env env, Napi::Object exports);    // op_optimizer.cpp
void register_norms_ops(Napi::Env env, Napi::Object exports);        // op_norms.cpp
void register_patchify_ops(Napi::Env env, Napi::Object exports);     // op_patchify.cpp
void register_rows_ops(Napi::Env env, Napi::Object exports);         // op_rows.cpp
void register_sampling_ops(Napi::Env env, Napi::Object exports);     // op_sampling.cpp
void register_collectives_ops(Napi::Env env, Napi::Object exports);  // op_collectives.cpp

// A tensor option (a TensorHandle), or nullopt when absent/undefined.
std::optional<Tensor> read_tensor_option(const std::optional<Napi::Object>& options, const char* key, const char* fn);

// { name: TensorHandle, ... } for ops with several outputs.
Napi::Object tensor_object(Napi::Env env, std::initializer_list<std::pair<const char*, Tensor>> fields);

// Adds fn to exports under `name`, with its errors turned into R1VError.
template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
void export_op(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(
                        env, [](const Napi::CallbackInfo& info) { return guarded(info.Env(), [&] { return Fn(info); }); },
                        name));
}

}  // namespace r1v::bindings

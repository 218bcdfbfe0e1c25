// The JavaScript handle of an engine: a device, its allocator and its stream.
#pragma once
#include <napi.h>

#include <memory>

#include "../native/core/tensor.h"

namespace r1v::bindings {

class EngineHandle : public Napi::ObjectWrap<EngineHandle> {
 public:
  static const napi_type_tag kTag;
  static constexpr const char* kClassName = "EngineHandle";

  static Napi::Function define(Napi::Env env);
  explicit EngineHandle(const Napi::CallbackInfo& info);

 private:
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value seed(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  Napi::Value tensor(const Napi::CallbackInfo& info);
  Napi::Value full(const Napi::CallbackInfo& info);
  Napi::Value randn(const Napi::CallbackInfo& info);
  Napi::Value memory_stats(const Napi::CallbackInfo& info);
  Napi::Value reset_peak_memory(const Napi::CallbackInfo& info);
  Napi::Value set_cpu_gemm(const Napi::CallbackInfo& info);
  Napi::Value set_poison_new_tensors(const Napi::CallbackInfo& info);
  Napi::Value synchronize(const Napi::CallbackInfo& info);
  Napi::Value synchronize_sync(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  const std::shared_ptr<Context>& live() const;

  std::shared_ptr<Context> ctx_;
};

}  // namespace r1v::bindings

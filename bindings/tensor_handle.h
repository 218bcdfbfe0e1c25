// The JavaScript handle of a native tensor. Holds one reference to the tensor's memory
// and reports its size to V8 as external memory, so forgotten tensors get collected.
#pragma once
#include <napi.h>

#include "../native/core/tensor.h"

namespace r1v::bindings {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static const napi_type_tag kTag;  // marks real handles (a forged prototype is not enough)
  static constexpr const char* kClassName = "TensorHandle";

  static Napi::Function define(Napi::Env env);
  // Wraps t in a new handle object.
  static Napi::Object wrap(Napi::Env env, Tensor t);
  // The live tensor behind a handle argument; throws R1VError naming `name` otherwise.
  static const Tensor& unwrap(const Napi::Value& v, const char* name);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value numel(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  Napi::Value to_array(const Napi::CallbackInfo& info);
  Napi::Value to_array_sync(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  const Tensor& live(const char* what) const;
  void release(Napi::Env env);

  Tensor tensor_;
  int64_t reported_bytes_ = 0;
};

// Allocates the typed array a readback of t fills: Float32Array or Int32Array. Throws
// Error(Argument) past a typed array's length (2^32 elements), Error(OOM) past the machine's memory.
Napi::TypedArray new_host_array(Napi::Env env, const Tensor& t, void** data);

}  // namespace r1v::bindings

// Per-environment state of the addon: the registered error class, the handle
// constructors, and the one thread-safe function through which work finishing on engine
// streams resolves its Promises on the JavaScript thread.
#pragma once
#include <napi.h>

#include <exception>
#include <functional>

namespace r1v::bindings {

struct AddonData {
  Napi::FunctionReference error_class;
  Napi::FunctionReference tensor_class;
  Napi::ThreadSafeFunction completions;
  int pending = 0;  // Promises awaiting completion; while > 0 the event loop stays alive

  static AddonData* get(Napi::Env env) { return env.GetInstanceData<AddonData>(); }
};

// A Promise whose outcome is produced off the JavaScript thread. Call begin() on the JS
// thread; the stream later calls finish() exactly once, from any thread; `settle` then
// runs on the JS thread to build the resolved value (or the error rejects it).
class PendingPromise {
 public:
  using Settle = std::function<Napi::Value(Napi::Env)>;
  static PendingPromise* begin(Napi::Env env, Settle settle);
  Napi::Promise promise() const { return deferred_.Promise(); }
  void finish(std::exception_ptr error);

 private:
  PendingPromise(Napi::Env env, Settle settle)
      : deferred_(Napi::Promise::Deferred::New(env)), settle_(std::move(settle)) {}
  Napi::Promise::Deferred deferred_;
  Settle settle_;
  std::exception_ptr error_;
  AddonData* data_ = nullptr;
};

}  // namespace r1v::bindings

// Per-environment state of the addon (each worker thread that loads it has its own): the
// registered error class, the handle constructors, the thread-safe function through which
// work finishing on engine streams resolves its Promises on the JavaScript thread, and what
// the environment's teardown must stop (see teardown_environment in addon.cpp).
#pragma once
#include <napi.h>

#include <exception>
#include <functional>
#include <memory>
#include <unordered_set>
#include <vector>

#include "../native/core/tensor.h"

namespace r1v::bindings {

struct AddonData;

// A Promise whose outcome is produced off the JavaScript thread. Call begin() on the JS
// thread; the stream later calls finish() exactly once, from any thread; `settle` then
// runs on the JS thread to build the resolved value (or the error rejects it). A Promise
// still pending when the environment is torn down is freed by discard_all(), never by a
// stream thread (its references belong to the JavaScript thread).
class PendingPromise {
 public:
  using Settle = std::function<Napi::Value(Napi::Env)>;
  static PendingPromise* begin(Napi::Env env, Settle settle);
  Napi::Promise promise() const { return deferred_.Promise(); }
  void finish(std::exception_ptr error);

  // The completions function's call_js, on the JS thread: settles and frees the Promise
  // `pending`; `context` is the AddonData. A null env means the function is being torn
  // down; discard_all() frees what is left.
  static void deliver(napi_env env, napi_value, void* context, void* pending);
  // Frees every Promise of the environment that is still pending (teardown, on its JS thread).
  static void discard_all(AddonData* data);

 private:
  PendingPromise(Napi::Env env, Settle settle)
      : deferred_(Napi::Promise::Deferred::New(env)), settle_(std::move(settle)) {}
  void settle(Napi::Env env);
  Napi::Promise::Deferred deferred_;
  Settle settle_;
  std::exception_ptr error_;
  AddonData* data_ = nullptr;
};

struct AddonData {
  Napi::FunctionReference error_class;
  Napi::FunctionReference tensor_class;
  // The Node-API handle itself (node-addon-api's typed wrapper does not compile under UBSan):
  // call_js is PendingPromise::deliver, referenced while `pending` is not empty.
  napi_threadsafe_function completions = nullptr;
  std::unordered_set<PendingPromise*> pending;  // while not empty the event loop stays alive
  std::vector<std::weak_ptr<Context>> engines;   // made in this environment

  static AddonData* get(Napi::Env env) { return env.GetInstanceData<AddonData>(); }
  // A new engine, registered with this environment (its teardown abandons it).
  std::shared_ptr<Context> create_engine(Device device, uint64_t seed) {
    std::erase_if(engines, [](const std::weak_ptr<Context>& e) { return e.expired(); });
    engines.reserve(engines.size() + 1);  // so that registering the engine cannot fail once it exists
    std::shared_ptr<Context> ctx = Context::create(device, seed);
    engines.push_back(ctx);
    return ctx;
  }
};

}  // namespace r1v::bindings

// Module entry: registers the handle classes and the free functions of the addon, and
// the teardown of each environment (the main thread, a worker thread) that loads it.
// lib/native.ts is the only JavaScript that loads this module.
#include <napi.h>

#include "../native/core/blas.h"
#include "../native/core/cublaslt.h"
#include "../native/core/cpu_info.h"
#include "../native/core/device.h"
#include "../native/core/runtime.h"
#include "../native/core/thread_pool.h"
#include "addon_data.h"
#include "args.h"
#include "engine_handle.h"
#include "errors.h"
#include "ops.h"
#include "tensor_handle.h"

#ifndef R1V_VERSION
#define R1V_VERSION "0.0.0"
#endif

namespace r1v::bindings {

namespace {

// setErrorClass(R1VError): native errors are thrown as `new R1VError(code, message)`.
Napi::Value set_error_class(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    expect_count(info, 1, 1, "setErrorClass");
    if (!info[0].IsFunction()) fail(ErrorCode::Argument, "errorClass must be a constructor");
    AddonData::get(info.Env())->error_class = Napi::Persistent(info[0].As<Napi::Function>());
    return info.Env().Undefined();
  });
}

Napi::Value devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expect_count(info, 0, 0, "devices");
    std::vector<DeviceInfo> list = list_devices();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const DeviceInfo& d = list[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("id", d.device.id());
      o.Set("kind", d.device.is_cpu() ? "cpu" : "cuda");
      o.Set("name", d.name);
      if (d.device.is_cpu()) {
        o.Set("threads", d.threads);
      } else {
        o.Set("memoryBytes", static_cast<double>(d.memory_bytes));
        Napi::Array cc = Napi::Array::New(env, 2);
        cc.Set(0u, d.compute_major);
        cc.Set(1u, d.compute_minor);
        o.Set("computeCapability", cc);
        o.Set("multiprocessors", d.multiprocessors);
      }
      out.Set(static_cast<uint32_t>(i), o);
    }
    return out;
  });
}

Napi::Value build_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    expect_count(info, 0, 0, "buildInfo");
    Napi::Object o = Napi::Object::New(env);
    o.Set("version", R1V_VERSION);
    o.Set("cuda", built_with_cuda());
    o.Set("cudaArchitectures", cuda_architectures());
    const BlasLibrary* lib = blas();
    o.Set("blas", lib ? Napi::Value(Napi::String::New(env, lib->path)) : env.Null());
    const cublaslt::Library* lt = cublaslt::library();
    o.Set("cublasLt", lt ? Napi::Value(Napi::String::New(env, lt->path)) : env.Null());
    o.Set("cpuIsa", cpu_info().isa);
    o.Set("threads", ThreadPool::global().num_threads());
    return o;
  });
}

// measureCpuPeakGflops(seconds): the machine's fp32 FMA rate over all pool threads.
Napi::Value measure_cpu_peak(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    expect_count(info, 1, 1, "measureCpuPeakGflops");
    double seconds = read_number(info[0], "seconds");
    if (!(seconds > 0 && seconds <= 10)) fail(ErrorCode::Argument, "seconds must be in (0, 10], got ", seconds);
    return Napi::Number::New(info.Env(), measure_cpu_peak_gflops(seconds));
  });
}

// Cleanup hook of an environment, on its JavaScript thread once its event loop has stopped
// (a worker exiting or terminated, the main thread at exit), before the environment may
// unload the module and before its thread-safe function and handles are finalised:
//  1. stops its engines: queued work not started is dropped, the running work finishes,
//     memory is freed and each stream thread is joined (no thread calls `completions`
//     any more);
//  2. frees the Promises still pending (nothing can settle them now);
//  3. detaches from the core's process-wide threads: the last environment joins every
//     stream thread left and the CPU pool's workers.
void teardown_environment(AddonData* data) {
  for (const std::weak_ptr<Context>& engine : data->engines) {
    if (std::shared_ptr<Context> ctx = engine.lock()) ctx->abandon();
  }
  data->engines.clear();
  PendingPromise::discard_all(data);
  detach_environment();
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  Napi::Function tensor_class = TensorHandle::define(env);
  Napi::Function engine_class = EngineHandle::define(env);
  data->tensor_class = Napi::Persistent(tensor_class);
  napi_value name = Napi::String::New(env, "r1v.completions");
  NAPI_THROW_IF_FAILED(env,
                       napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr, data,
                                                       PendingPromise::deliver, &data->completions),
                       exports);
  napi_unref_threadsafe_function(env, data->completions);  // only pending Promises keep the process alive
  // Registered after the thread-safe function, so it runs before that function's own
  // cleanup (hooks run in reverse order): no stream thread calls it once it closes.
  attach_environment();
  env.AddCleanupHook(teardown_environment, data);

  exports.Set("TensorHandle", tensor_class);
  exports.Set("EngineHandle", engine_class);
  exports.Set("setErrorClass", Napi::Function::New(env, set_error_class, "setErrorClass"));
  exports.Set("devices", Napi::Function::New(env, devices, "devices"));
  exports.Set("buildInfo", Napi::Function::New(env, build_info, "buildInfo"));
  register_matmul_ops(env, exports);
  register_attention_ops(env, exports);
  register_connector_ops(env, exports);
  register_token_stats_ops(env, exports);
  register_elementwise_ops(env, exports);
  register_optimizer_ops(env, exports);
  register_norms_ops(env, exports);
  register_patchify_ops(env, exports);
  register_rows_ops(env, exports);
  register_sampling_ops(env, exports);
  register_collectives_ops(env, exports);
  exports.Set("measureCpuPeakGflops", Napi::Function::New(env, measure_cpu_peak, "measureCpuPeakGflops"));
  return exports;
}

}  // namespace

}  // namespace r1v::bindings

static Napi::Object init_r1v(Napi::Env env, Napi::Object exports) { return r1v::bindings::init(env, exports); }

NODE_API_MODULE(r1v, init_r1v)

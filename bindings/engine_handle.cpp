#include "engine_handle.h"

#include "../native/core/blas.h"
#include "../native/ops/fill.h"
#include "../native/ops/randn.h"
#include "addon_data.h"
#include "args.h"
#include "errors.h"
#include "tensor_handle.h"

namespace r1v::bindings {

const napi_type_tag EngineHandle::kTag = {0x7231762d656e6769ULL, 0x6e652d68616e646cULL};

Napi::Function EngineHandle::define(Napi::Env env) {
  Napi::Function constructor = DefineClass(env, kClassName, {});
  Napi::Object prototype = constructor.Get("prototype").As<Napi::Object>();
  define_getter<EngineHandle, &EngineHandle::device>(prototype, "device");
  define_getter<EngineHandle, &EngineHandle::seed>(prototype, "seed");
  define_getter<EngineHandle, &EngineHandle::disposed>(prototype, "disposed");
  define_method<EngineHandle, &EngineHandle::tensor>(env, prototype, "tensor");
  define_method<EngineHandle, &EngineHandle::full>(env, prototype, "full");
  define_method<EngineHandle, &EngineHandle::randn>(env, prototype, "randn");
  define_method<EngineHandle, &EngineHandle::memory_stats>(env, prototype, "memoryStats");
  define_method<EngineHandle, &EngineHandle::reset_peak_memory>(env, prototype, "resetPeakMemory");
  define_method<EngineHandle, &EngineHandle::set_cpu_gemm>(env, prototype, "setCpuGemm");
  define_method<EngineHandle, &EngineHandle::set_poison_new_tensors>(env, prototype, "setPoisonNewTensors");
  define_method<EngineHandle, &EngineHandle::synchronize>(env, prototype, "synchronize");
  define_method<EngineHandle, &EngineHandle::synchronize_sync>(env, prototype, "synchronizeSync");
  define_method<EngineHandle, &EngineHandle::dispose>(env, prototype, "dispose");
  return constructor;
}

// new EngineHandle(device: 'cpu' | 'cuda:N', seed: non-negative integer)
EngineHandle::EngineHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineHandle>(info) {
  guarded(info.Env(), [&]() -> Napi::Value {
    expect_count(info, 2, 2, "new EngineHandle");
    Device device = parse_device(read_string(info[0], "device"));
    uint64_t seed = read_index(info[1], "seed");
    ctx_ = AddonData::get(info.Env())->create_engine(device, seed);
    info.This().As<Napi::Object>().TypeTag(&kTag);
    return info.Env().Undefined();
  });
}

const std::shared_ptr<Context>& EngineHandle::live() const {
  if (!ctx_ || ctx_->disposed()) fail(ErrorCode::Disposed, "the engine is disposed");
  return ctx_;
}

Napi::Value EngineHandle::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), ctx_->device().id());
}

Napi::Value EngineHandle::seed(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(ctx_->seed()));
}

Napi::Value EngineHandle::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), ctx_->disposed());
}

// tensor(data: Float32Array | Float64Array | Int32Array | number[], shape, dtype)
Napi::Value EngineHandle::tensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 3, 3, "tensor");
  const auto& ctx = live();
  Shape shape = read_shape(info[1], "shape");
  DType dtype = read_dtype(info[2], "dtype");
  Napi::Value data = info[0];
  if (data.IsTypedArray()) {
    // The typed array's own data pointer: also right for subarrays and SharedArrayBuffers.
    Napi::TypedArray array = data.As<Napi::TypedArray>();
    switch (array.TypedArrayType()) {
      case napi_float32_array: {
        auto typed = data.As<Napi::Float32Array>();
        return TensorHandle::wrap(
            env, tensor_from_host(ctx, shape, dtype, typed.Data(), HostType::F32, typed.ElementLength()));
      }
      case napi_float64_array: {
        auto typed = data.As<Napi::Float64Array>();
        return TensorHandle::wrap(
            env, tensor_from_host(ctx, shape, dtype, typed.Data(), HostType::F64, typed.ElementLength()));
      }
      case napi_int32_array: {
        auto typed = data.As<Napi::Int32Array>();
        return TensorHandle::wrap(
            env, tensor_from_host(ctx, shape, dtype, typed.Data(), HostType::I32, typed.ElementLength()));
      }
      default:
        fail(ErrorCode::Argument, "data must be a Float32Array, Float64Array, Int32Array or number[]");
    }
  }
  if (data.IsArray()) {
    Napi::Array array = data.As<Napi::Array>();
    // Check the length before reading: a sparse array can claim 2^32 − 1 elements.
    int64_t numel = shape_numel(shape);
    if (static_cast<int64_t>(array.Length()) != numel)
      fail(ErrorCode::Shape, "data has ", array.Length(), " elements but shape ", shape_str(shape), " needs ", numel);
    check_host_allocation(static_cast<uint64_t>(numel) * 8, "the data");
    std::vector<double> values(array.Length());
    for (uint32_t i = 0; i < values.size(); ++i) {
      Napi::Value v = array.Get(i);
      if (!v.IsNumber()) fail(ErrorCode::Argument, "data[", i, "] must be a number");
      values[i] = v.As<Napi::Number>().DoubleValue();
    }
    return TensorHandle::wrap(env, tensor_from_host(ctx, shape, dtype, values.data(), HostType::F64, values.size()));
  }
  fail(ErrorCode::Argument, "data must be a Float32Array, Float64Array, Int32Array or number[]");
}

// full(shape, dtype, value)
Napi::Value EngineHandle::full(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 3, 3, "full");
  const auto& ctx = live();
  Shape shape = read_shape(info[0], "shape");
  DType dtype = read_dtype(info[1], "dtype");
  double value = read_number(info[2], "value");
  return TensorHandle::wrap(env, r1v::full(ctx, shape, dtype, value));
}

// randn(shape, dtype, seed?: non-negative integer)
Napi::Value EngineHandle::randn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 2, 3, "randn");
  const auto& ctx = live();
  Shape shape = read_shape(info[0], "shape");
  DType dtype = read_dtype(info[1], "dtype");
  std::optional<uint64_t> seed;
  if (info.Length() == 3 && !info[2].IsUndefined()) seed = read_index(info[2], "seed");
  return TensorHandle::wrap(env, r1v::randn(ctx, shape, dtype, seed));
}

Napi::Value EngineHandle::memory_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MemoryStats s = ctx_->allocator().stats();
  Napi::Object out = Napi::Object::New(env);
  out.Set("allocatedBytes", static_cast<double>(s.allocated_bytes));
  out.Set("peakBytes", static_cast<double>(s.peak_bytes));
  out.Set("reservedBytes", static_cast<double>(s.reserved_bytes));
  return out;
}

Napi::Value EngineHandle::reset_peak_memory(const Napi::CallbackInfo& info) {
  ctx_->allocator().reset_peak();
  return info.Env().Undefined();
}

// setCpuGemm('auto' | 'builtin' | 'blas'): which CPU GEMM matmul uses (benchmarks, tests).
Napi::Value EngineHandle::set_poison_new_tensors(const Napi::CallbackInfo& info) {
  expect_count(info, 1, 1, "setPoisonNewTensors");
  live()->set_poison_new_tensors(read_bool(info[0], "on"));
  return info.Env().Undefined();
}

Napi::Value EngineHandle::set_cpu_gemm(const Napi::CallbackInfo& info) {
  expect_count(info, 1, 1, "setCpuGemm");
  std::string name = read_string(info[0], "backend");
  CpuGemmBackend backend;
  if (name == "auto")
    backend = CpuGemmBackend::Auto;
  else if (name == "builtin")
    backend = CpuGemmBackend::Builtin;
  else if (name == "blas" && blas())
    backend = CpuGemmBackend::Blas;
  else if (name == "blas")
    fail(ErrorCode::Argument, "setCpuGemm('blas'): no BLAS library could be loaded (see R1V_BLAS; buildInfo().blas is null)");
  else
    fail(ErrorCode::Argument, "backend '", name, "' must be 'auto', 'builtin' or 'blas'");
  live()->set_cpu_gemm(backend);
  return info.Env().Undefined();
}

Napi::Value EngineHandle::synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 0, 0, "synchronize");
  std::shared_ptr<Context> ctx = live();
  PendingPromise* pending = PendingPromise::begin(env, [](Napi::Env e) -> Napi::Value { return e.Undefined(); });
  Napi::Promise promise = pending->promise();
  ctx->stream().enqueue([ctx, pending] { pending->finish(ctx->stream().synchronize_on_stream()); });
  return promise;
}

Napi::Value EngineHandle::synchronize_sync(const Napi::CallbackInfo& info) {
  expect_count(info, 0, 0, "synchronizeSync");
  live()->stream().synchronize();
  return info.Env().Undefined();
}

Napi::Value EngineHandle::dispose(const Napi::CallbackInfo& info) {
  ctx_->dispose();
  return info.Env().Undefined();
}

}  // namespace r1v::bindings

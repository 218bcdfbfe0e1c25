#include "tensor_handle.h"

#include <future>

#include "addon_data.h"
#include "args.h"
#include "errors.h"

namespace r1v::bindings {

namespace {
// Runs on t's stream: copies t out. Fails with the tensor's own error (from the op that
// should have written it; now delivered, so synchronize() does not raise it again), or with
// bad data found on the device; errors of unrelated ops are left for synchronize().
std::exception_ptr read_on_stream(const Tensor& t, void* host) {
  try {
    tensor_to_host(t, host);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}
}  // namespace

const napi_type_tag TensorHandle::kTag = {0x7231762d74656e73ULL, 0x6f722d68616e646cULL};

Napi::Function TensorHandle::define(Napi::Env env) {
  Napi::Function constructor = DefineClass(env, kClassName, {});
  Napi::Object prototype = constructor.Get("prototype").As<Napi::Object>();
  define_getter<TensorHandle, &TensorHandle::shape>(prototype, "shape");
  define_getter<TensorHandle, &TensorHandle::dtype>(prototype, "dtype");
  define_getter<TensorHandle, &TensorHandle::device>(prototype, "device");
  define_getter<TensorHandle, &TensorHandle::numel>(prototype, "numel");
  define_getter<TensorHandle, &TensorHandle::disposed>(prototype, "disposed");
  define_method<TensorHandle, &TensorHandle::to_array>(env, prototype, "toArray");
  define_method<TensorHandle, &TensorHandle::to_array_sync>(env, prototype, "toArraySync");
  define_method<TensorHandle, &TensorHandle::dispose>(env, prototype, "dispose");
  return constructor;
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  // Only wrap() may create handles; it passes an External carrying the tensor.
  if (info.Length() != 1 || !info[0].IsExternal())
    throw make_error(info.Env(), ErrorCode::Argument,
                     "TensorHandle cannot be constructed from JavaScript; use Engine methods");
  tensor_ = *info[0].As<Napi::External<Tensor>>().Data();
  info.This().As<Napi::Object>().TypeTag(&kTag);
  reported_bytes_ = static_cast<int64_t>(tensor_.nbytes());
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), reported_bytes_);
}

TensorHandle::~TensorHandle() {
  // Finalizer: the external-memory report is dropped with the handle.
  if (reported_bytes_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_bytes_);
}

Napi::Object TensorHandle::wrap(Napi::Env env, Tensor t) {
  AddonData* data = AddonData::get(env);
  Napi::External<Tensor> external = Napi::External<Tensor>::New(env, &t);
  return data->tensor_class.New({external});  // the constructor copies the tensor out
}

const Tensor& TensorHandle::unwrap(const Napi::Value& v, const char* name) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kTag)) fail(ErrorCode::Argument, name, " must be a tensor");
  TensorHandle* handle = Unwrap(v.As<Napi::Object>());
  return handle->live(name);
}

const Tensor& TensorHandle::live(const char* what) const {
  tensor_.check_alive(what);
  return tensor_;
}

void TensorHandle::release(Napi::Env env) {
  tensor_ = Tensor();  // memory returns once queued work using it has run
  if (reported_bytes_) Napi::MemoryManagement::AdjustExternalMemory(env, -reported_bytes_);
  reported_bytes_ = 0;
}

Napi::Value TensorHandle::shape(const Napi::CallbackInfo& info) {
  return shape_to_js(info.Env(), live("tensor").shape());
}

Napi::Value TensorHandle::dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtype_name(live("tensor").dtype()));
}

Napi::Value TensorHandle::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), live("tensor").device().id());
}

Napi::Value TensorHandle::numel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(live("tensor").numel()));
}

Napi::Value TensorHandle::disposed(const Napi::CallbackInfo& info) {
  bool alive = tensor_.defined() && !tensor_.context()->disposed() && tensor_.data() != nullptr;
  return Napi::Boolean::New(info.Env(), !alive);
}

Napi::TypedArray new_host_array(Napi::Env env, const Tensor& t, void** data) {
  // The longest typed array V8 makes (v8::TypedArray::kMaxLength on 64-bit): asking for a
  // longer one ends the process with a fatal error.
  constexpr uint64_t kMaxTypedArrayLength = uint64_t{1} << 32;
  size_t n = static_cast<size_t>(t.numel());
  if (n > kMaxTypedArrayLength)
    fail(ErrorCode::Argument, "toArray: the tensor has ", n, " elements, more than the ", kMaxTypedArrayLength,
         " a JavaScript typed array can hold; read it in parts (e.g. gatherRows of row ranges)");
  check_host_allocation(n * 4, "the host copy");
  if (t.dtype() == DType::I32) {
    Napi::Int32Array out = Napi::Int32Array::New(env, n);
    *data = out.Data();
    return out;
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, n);
  *data = out.Data();
  return out;
}

Napi::Value TensorHandle::to_array(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 0, 0, "toArray");
  Tensor t = live("tensor");
  void* host = nullptr;
  // The array is made now and filled by the stream; JavaScript sees it only once filled.
  auto array = std::make_shared<Napi::Reference<Napi::TypedArray>>(Napi::Persistent(new_host_array(env, t, &host)));
  PendingPromise* pending = PendingPromise::begin(env, [array](Napi::Env) -> Napi::Value {
    Napi::Value value = array->Value();
    array->Reset();
    return value;
  });
  Napi::Promise promise = pending->promise();
  t.context()->stream().enqueue([t, host, pending] { pending->finish(read_on_stream(t, host)); });
  return promise;
}

Napi::Value TensorHandle::to_array_sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_count(info, 0, 0, "toArraySync");
  Tensor t = live("tensor");
  void* host = nullptr;
  Napi::TypedArray array = new_host_array(env, t, &host);
  std::promise<std::exception_ptr> done;
  std::future<std::exception_ptr> result = done.get_future();
  t.context()->stream().enqueue([t, host, &done] { done.set_value(read_on_stream(t, host)); });
  if (std::exception_ptr error = result.get()) std::rethrow_exception(error);
  return array;
}

Napi::Value TensorHandle::dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

}  // namespace r1v::bindings

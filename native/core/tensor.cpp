#include "tensor.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "thread_pool.h"

#if R1V_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace r1v {

std::string shape_str(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) fail(ErrorCode::Shape, "shape ", shape_str(shape), " has a negative dimension at index ", i);
    if (shape[i] != 0 && n > std::numeric_limits<int64_t>::max() / 8 / shape[i])
      fail(ErrorCode::Shape, "shape ", shape_str(shape), " has too many elements");
    n *= shape[i];
  }
  return n;
}

// ---------------------------------------------------------------- Context

Context::Context(Device device, uint64_t seed) : device_(device), seed_(seed) {}

std::shared_ptr<Context> Context::create(Device device, uint64_t seed) {
  std::shared_ptr<Context> ctx(new Context(device, seed));
  ctx->stream_ = std::make_unique<Stream>(device);
  if (device.is_cuda()) {
#if R1V_WITH_CUDA
    ctx->allocator_ = make_cuda_allocator(device.index, ctx->stream_->cuda_stream());
#else
    fail(ErrorCode::Device, "this build of r1v has no CUDA support");
#endif
  } else {
    ctx->allocator_ = make_cpu_allocator();
  }
  return ctx;
}

Context::~Context() { dispose(); }

void Context::dispose() {
  if (disposed_.exchange(true)) return;
  // Work still queued must finish before its memory goes; when the last reference to the
  // engine is dropped by that work itself there is nothing left to wait for.
  // The stream first: work on the side stream waits for marks the stream's work sets.
  for (Stream* s : {stream_.get(), side_stream_.get()}) {
    if (s && !s->on_stream_thread()) {
      try {
        s->synchronize();
      } catch (...) {
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(storages_mutex_);
    for (Storage* s : storages_) s->release();
    storages_.clear();
  }
  if (allocator_) allocator_->empty_cache();
  {
    std::lock_guard<std::mutex> lock(side_mutex_);
    side_stream_.reset();
  }
  stream_.reset();  // stops the thread once its queue is empty and joins it (see ~Stream)
}

void Context::abandon() {
  if (!disposed()) {
    if (stream_) stream_->drop_queued();
    std::lock_guard<std::mutex> lock(side_mutex_);
    if (side_stream_) side_stream_->drop_queued();
  }
  dispose();
}

Stream& Context::side_stream() {
  std::lock_guard<std::mutex> lock(side_mutex_);
  check_alive("the side stream");
  if (!side_stream_) side_stream_ = std::make_unique<Stream>(device_);
  return *side_stream_;
}

void Context::check_alive(const char* what) const {
  if (disposed()) fail(ErrorCode::Disposed, what, " belongs to a disposed engine");
}

void Context::register_storage(Storage* s) {
  std::lock_guard<std::mutex> lock(storages_mutex_);
  storages_.insert(s);
}

void Context::unregister_storage(Storage* s) {
  std::lock_guard<std::mutex> lock(storages_mutex_);
  storages_.erase(s);
}

// ---------------------------------------------------------------- Storage

Storage::Storage(const std::shared_ptr<Context>& ctx, size_t bytes) : ctx_(ctx), allocator_(nullptr), bytes_(bytes) {
  ctx->check_alive("a new tensor");
  allocator_ = ctx->allocator_ptr();
  data_ = allocator_->allocate(bytes);
  ctx->register_storage(this);
}

Storage::~Storage() {
  if (auto ctx = ctx_.lock()) ctx->unregister_storage(this);
  release();
}

WorkErrorPtr Storage::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

void Storage::set_error(WorkErrorPtr error) {
  std::lock_guard<std::mutex> lock(mutex_);
  error_ = std::move(error);
}

void Storage::release() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!data_) return;
  allocator_->deallocate(data_, bytes_);
  data_ = nullptr;
}

// ---------------------------------------------------------------- Tensor

Tensor Tensor::empty(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype) {
  Tensor t;
  t.numel_ = shape_numel(shape);
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.ctx_ = ctx;
  t.storage_ = std::make_shared<Storage>(ctx, t.nbytes());
  if (ctx->poison_new_tensors() && t.nbytes() > 0) {
    if (ctx->device().is_cpu()) {
      std::memset(t.data(), 0xFF, t.nbytes());
    } else {
#if R1V_WITH_CUDA
      // In stream order: now when called from work on the stream, else as queued work.
      // Checked: an unchecked failure stays the runtime's last error and the next
      // check_launch would blame an unrelated kernel for it.
      auto poison = [t] {
        cudaError_t err =
            cudaMemsetAsync(t.data(), 0xFF, t.nbytes(), static_cast<cudaStream_t>(t.context()->stream().cuda_stream()));
        if (err != cudaSuccess) fail(ErrorCode::Cuda, "poisoning a new tensor failed: ", cudaGetErrorString(err));
      };
      if (ctx->stream().on_stream_thread()) {
        poison();
      } else {
        ctx->stream().enqueue(poison);
      }
#endif
    }
  }
  return t;
}

void enqueue_op_seeing_errors(const std::shared_ptr<Context>& ctx, std::vector<Tensor> inputs,
                              std::vector<Tensor> outputs, std::function<void(const WorkErrorPtr&)> work) {
  // The stream outlives the work it runs (its tensors hold the context that owns it).
  Stream* stream = &ctx->stream();
  stream->enqueue([stream, inputs = std::move(inputs), outputs = std::move(outputs), work = std::move(work)] {
    WorkErrorPtr error;
    for (const Tensor& t : inputs) {
      if ((error = t.error())) break;
    }
    try {
      work(error);
    } catch (...) {
      error = std::make_shared<WorkError>(std::current_exception());
    }
    if (!error) return;
    for (const Tensor& t : outputs) t.set_error(error);
    stream->keep_error(error);
  });
}

void enqueue_op(const std::shared_ptr<Context>& ctx, std::vector<Tensor> inputs, std::vector<Tensor> outputs,
                std::function<void()> work) {
  enqueue_op_seeing_errors(ctx, std::move(inputs), std::move(outputs),
                           [work = std::move(work)](const WorkErrorPtr& input_error) {
                             if (!input_error) work();
                           });
}

Tensor Tensor::reshaped(const Shape& shape) const {
  const int64_t numel = shape_numel(shape);
  if (numel != numel_)
    fail(ErrorCode::Shape, "cannot view ", shape_str(shape_), " (", numel_, " elements) as ", shape_str(shape), " (",
         numel, " elements)");
  Tensor view = *this;
  view.shape_ = shape;
  return view;
}

void Tensor::check_alive(const char* name) const {
  if (!defined()) fail(ErrorCode::Disposed, name, " is disposed");
  ctx_->check_alive(name);
  if (!storage_->data()) fail(ErrorCode::Disposed, name, " is disposed (its memory was released)");
}

// ---------------------------------------------------------------- host transfers

namespace {

double host_value(const void* host, HostType type, size_t i) {
  switch (type) {
    case HostType::F32:
      return static_cast<const float*>(host)[i];
    case HostType::F64:
      return static_cast<const double*>(host)[i];
    case HostType::I32:
      return static_cast<const int32_t*>(host)[i];
  }
  return 0;
}

// Converts host values into the tensor's element type, in place at dst.
void convert_from_host(void* dst, DType dtype, const void* host, HostType type, size_t count) {
  if (count == 0) return;  // an empty typed array may have no data pointer at all
  if (dtype == DType::I32) {
    auto* out = static_cast<int32_t*>(dst);
    for (size_t i = 0; i < count; ++i) {
      double v = host_value(host, type, i);
      if (!(v == std::floor(v)) || v < -2147483648.0 || v > 2147483647.0)
        fail(ErrorCode::Argument, "data[", i, "] = ", v, " is not a 32-bit integer (dtype i32)");
      out[i] = static_cast<int32_t>(v);
    }
    return;
  }
  if (dtype == DType::F32 && type == HostType::F32) {
    std::memcpy(dst, host, count * 4);
    return;
  }
  for (size_t i = 0; i < count; ++i) {
    float v = static_cast<float>(host_value(host, type, i));
    switch (dtype) {
      case DType::F32:
        static_cast<float*>(dst)[i] = v;
        break;
      case DType::BF16:
        static_cast<uint16_t*>(dst)[i] = float_to_bf16_bits(v);
        break;
      case DType::F16:
        static_cast<uint16_t*>(dst)[i] = float_to_f16_bits(v);
        break;
      case DType::I32:
        break;
    }
  }
}

// Converts tensor elements to f32 (float dtypes) or i32.
void convert_to_host(void* dst, DType dtype, const void* src, size_t count) {
  if (count == 0) return;  // an empty typed array may have no data pointer at all
  switch (dtype) {
    case DType::F32:
    case DType::I32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::BF16:
      for (size_t i = 0; i < count; ++i)
        static_cast<float*>(dst)[i] = bf16_bits_to_float(static_cast<const uint16_t*>(src)[i]);
      return;
    case DType::F16:
      for (size_t i = 0; i < count; ++i)
        static_cast<float*>(dst)[i] = f16_bits_to_float(static_cast<const uint16_t*>(src)[i]);
      return;
  }
}

#if R1V_WITH_CUDA
void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail(ErrorCode::Cuda, what, ": ", cudaGetErrorString(status));
}
#endif

}  // namespace

Tensor tensor_from_host(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype, const void* host,
                        HostType host_type, size_t count) {
  int64_t numel = shape_numel(shape);
  if (static_cast<size_t>(numel) != count)
    fail(ErrorCode::Shape, "data has ", count, " elements but shape ", shape_str(shape), " needs ", numel);
  if (ctx->device().is_cpu()) {
    Tensor t = Tensor::empty(ctx, shape, dtype);
    convert_from_host(t.data(), dtype, host, host_type, count);
    return t;
  }
#if R1V_WITH_CUDA
  check_host_allocation(count * dtype_size(dtype), "the host staging copy");
  auto staging = std::make_shared<std::vector<uint8_t>>(count * dtype_size(dtype));
  convert_from_host(staging->data(), dtype, host, host_type, count);
  Tensor t = Tensor::empty(ctx, shape, dtype);
  enqueue_op(ctx, {}, {t}, [t, staging] {
    auto stream = static_cast<cudaStream_t>(t.context()->stream().cuda_stream());
    check_cuda(cudaMemcpyAsync(t.data(), staging->data(), staging->size(), cudaMemcpyHostToDevice, stream),
               "copy to device");
    // The staging buffer must stay alive until the copy has read it.
    check_cuda(cudaStreamSynchronize(stream), "copy to device");
  });
  return t;
#else
  fail(ErrorCode::Device, "this build of r1v has no CUDA support");
#endif
}

void tensor_to_host(const Tensor& t, void* dst) {
  if (WorkErrorPtr error = t.error()) {
    error->delivered.store(true);
    std::rethrow_exception(error->error);
  }
  if (t.device().is_cpu()) {
    convert_to_host(dst, t.dtype(), t.data(), static_cast<size_t>(t.numel()));
    return;
  }
#if R1V_WITH_CUDA
  check_host_allocation(t.nbytes(), "the host staging copy");
  std::vector<uint8_t> staging(t.nbytes());
  auto stream = static_cast<cudaStream_t>(t.context()->stream().cuda_stream());
  check_cuda(cudaMemcpyAsync(staging.data(), t.data(), t.nbytes(), cudaMemcpyDeviceToHost, stream), "copy to host");
  t.context()->stream().wait_device();  // also raises bad data found by kernels (device_error_word)
  convert_to_host(dst, t.dtype(), staging.data(), static_cast<size_t>(t.numel()));
#endif
}

}  // namespace r1v

// Context (one per engine: device, allocator, stream, RNG state) and Tensor (a dense,
// contiguous, row-major array on one context). Tensor data is only touched by work on
// the context's stream, or before the tensor is shared (right after allocation).
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "allocator.h"
#include "device.h"
#include "dtype.h"
#include "error.h"
#include "stream.h"

namespace r1v {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);  // throws Error(Shape) on negative dims or overflow

enum class CpuGemmBackend { Auto, Builtin, Blas };

class Storage;

class Context : public std::enable_shared_from_this<Context> {
 public:
  static std::shared_ptr<Context> create(Device device, uint64_t seed);
  ~Context();

  Device device() const { return device_; }
  Allocator& allocator() { return *allocator_; }
  const std::shared_ptr<Allocator>& allocator_ptr() const { return allocator_; }
  Stream& stream() { return *stream_; }
  // A second ordered queue with a thread (and, on CUDA, a cudaStream_t) of its own, made on first
  // use: work that must run beside the stream's (an overlapped collective). Cross-stream order is
  // the caller's (Stream::record_event / wait_event and a host signal). Throws Error(Disposed).
  Stream& side_stream();
  uint64_t seed() const { return seed_; }

  // The engine generator's next Philox offset (one per draw; see ops/randn.h).
  uint64_t next_rng_offset(uint64_t steps) { return rng_offset_.fetch_add(steps); }

  // Debug aid: every new tensor is filled with 0xFF bytes (NaN in every float dtype), so
  // elements an op forgets to write show up as NaN instead of plausible stale values.
  bool poison_new_tensors() const { return poison_.load(); }
  void set_poison_new_tensors(bool on) { poison_.store(on); }

  CpuGemmBackend cpu_gemm() const { return cpu_gemm_.load(); }
  void set_cpu_gemm(CpuGemmBackend backend) { cpu_gemm_.store(backend); }

  // Finishes queued work, frees the memory of every tensor of this context, stops the
  // stream. Later use of its tensors throws Error(Disposed). Idempotent.
  void dispose();
  // dispose() for an engine whose JavaScript environment is being torn down: the queued work
  // that has not started is dropped first (nobody can read its results any more).
  void abandon();
  bool disposed() const { return disposed_.load(); }
  void check_alive(const char* what) const;

  // Storage bookkeeping, so dispose() can free what users still hold.
  void register_storage(Storage* s);
  void unregister_storage(Storage* s);

 private:
  Context(Device device, uint64_t seed);
  Device device_;
  uint64_t seed_;
  std::atomic<uint64_t> rng_offset_{0};
  std::atomic<CpuGemmBackend> cpu_gemm_{CpuGemmBackend::Auto};
  std::atomic<bool> poison_{false};
  std::unique_ptr<Stream> stream_;
  std::mutex side_mutex_;
  std::unique_ptr<Stream> side_stream_;
  std::shared_ptr<Allocator> allocator_;
  std::atomic<bool> disposed_{false};
  std::mutex storages_mutex_;
  std::unordered_set<Storage*> storages_;
};

class Storage {
 public:
  Storage(const std::shared_ptr<Context>& ctx, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }  // nullptr once released
  size_t bytes() const { return bytes_; }
  void release();  // frees the memory now (engine dispose)

  // The error of the op that should have written this memory (null when it succeeded).
  // Reading the tensor rethrows it; ops given such a tensor pass the error on.
  WorkErrorPtr error() const;
  void set_error(WorkErrorPtr error);

 private:
  std::weak_ptr<Context> ctx_;
  std::shared_ptr<Allocator> allocator_;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  mutable std::mutex mutex_;
  WorkErrorPtr error_;
};

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised memory on ctx. Throws Error(OOM) when it cannot be had.
  static Tensor empty(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? i + ndim() : i]; }
  int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  Device device() const { return ctx_ ? ctx_->device() : Device{}; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  const std::shared_ptr<Context>& context() const { return ctx_; }

  void* data() const { return storage_ ? storage_->data() : nullptr; }

  // Throws Error(Disposed) when the engine was disposed or the memory released.
  void check_alive(const char* name) const;

  // A view of the same memory (and error) with another shape of equal numel; no copy.
  // Throws Error(Shape) when the element counts differ.
  Tensor reshaped(const Shape& shape) const;

  // See Storage::error. Call from work on the tensor's stream.
  WorkErrorPtr error() const { return storage_ ? storage_->error() : nullptr; }
  void set_error(WorkErrorPtr e) const {
    if (storage_) storage_->set_error(std::move(e));
  }

 private:
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::F32;
  std::shared_ptr<Context> ctx_;
  std::shared_ptr<Storage> storage_;
};

// Queues an op's work on ctx's stream. When an input carries the error of the op that made
// it, the work is skipped; when the work throws, its error is recorded. Either way every
// output is marked with the error (reading it fails with the cause, never returns unwritten
// memory) and the stream keeps it for the next synchronize(), which raises it unless a
// readback has delivered it first (see stream.h).
void enqueue_op(const std::shared_ptr<Context>& ctx, std::vector<Tensor> inputs, std::vector<Tensor> outputs,
                std::function<void()> work);

// enqueue_op for work that must run even when an input carries an error (a collective: every
// process has to take part, or its peers wait). work receives the first input error (null when
// none); when it returns normally with one, the outputs are still marked with it.
void enqueue_op_seeing_errors(const std::shared_ptr<Context>& ctx, std::vector<Tensor> inputs,
                              std::vector<Tensor> outputs, std::function<void(const WorkErrorPtr&)> work);

// Host ↔ tensor copies. from_host converts `count` host values (f32, f64 or i32, as
// given by host_type) to the tensor's dtype; the tensor is ready when this returns
// (CPU) or once the stream reaches the copy (CUDA).
enum class HostType { F32, F64, I32 };
Tensor tensor_from_host(const std::shared_ptr<Context>& ctx, const Shape& shape, DType dtype, const void* host,
                        HostType host_type, size_t count);
// Copies the tensor into dst as f32 (float dtypes) or i32 (i32). Must run on the
// tensor's stream (inside enqueued work), after the work that produced the tensor. A tensor
// carrying an error rethrows it, marked delivered (synchronize() does not raise it again).
void tensor_to_host(const Tensor& t, void* dst);

}  // namespace r1v

// The CUDA caching allocator. Freed blocks stay in a free list keyed by size and are
// handed out again for later requests, so steady-state training makes no cudaMalloc
// calls (which are slow and synchronise the device). Blocks are only used on the
// engine's stream, so a freed block can be reused by later work on that stream without
// events: stream order guarantees the earlier kernels are done with it.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "allocator.h"
#include "error.h"

namespace r1v {

namespace {

constexpr size_t kSmallGranularity = 512;              // requests up to kSmallLimit
constexpr size_t kSmallLimit = size_t{1} << 20;        // 1 MiB
constexpr size_t kLargeGranularity = size_t{2} << 20;  // 2 MiB, above kSmallLimit

size_t round_up(size_t bytes, size_t granularity) { return (bytes + granularity - 1) / granularity * granularity; }

// Makes device_index current for the scope and restores the caller's device after,
// since deallocate() may run on any thread (e.g. the JavaScript one).
class DeviceScope {
 public:
  explicit DeviceScope(int device_index) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
    }
    if (previous_ != device_index && cudaSetDevice(device_index) != cudaSuccess) {
      cudaGetLastError();
      ok_ = false;
    }
  }
  bool ok() const { return ok_; }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
  bool ok_ = true;
};

class CudaCachingAllocator final : public Allocator {
 public:
  CudaCachingAllocator(int device_index, void* stream)
      : device_index_(device_index), stream_(static_cast<cudaStream_t>(stream)) {}

  ~CudaCachingAllocator() override {
    // Errors are ignored: the driver may already be shutting down at process exit.
    // The whole device is synchronised, as the engine's stream may already be gone.
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceScope scope(device_index_);
    cudaDeviceSynchronize();
    for (const auto& [size, ptr] : free_blocks_) cudaFree(ptr);
    free_blocks_.clear();
    cudaGetLastError();
  }

  void* allocate(size_t bytes) override {
    R1V_CHECK(bytes <= (size_t{1} << 62), OOM, "CUDA allocation of ", bytes, " bytes is too large");
    // Zero bytes still gets a real block, so every tensor has a distinct pointer.
    const size_t rounded =
        bytes <= kSmallLimit ? round_up(bytes == 0 ? 1 : bytes, kSmallGranularity) : round_up(bytes, kLargeGranularity);
    std::lock_guard<std::mutex> lock(mutex_);

    // The smallest cached block that fits, if it wastes at most half of itself.
    auto it = free_blocks_.lower_bound(rounded);
    if (it != free_blocks_.end() && it->first / 2 <= rounded) {
      const size_t size = it->first;
      void* ptr = it->second;
      free_blocks_.erase(it);
      cached_bytes_ -= size;
      track_live(ptr, size);
      return ptr;
    }

    DeviceScope scope(device_index_);
    R1V_CHECK(scope.ok(), Cuda, "cannot make cuda:", device_index_, " the current device");
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, rounded);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear it, so later launch checks do not report it
      release_cached_locked();
      err = cudaMalloc(&ptr, rounded);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      if (err == cudaErrorMemoryAllocation) {
        size_t free_bytes = 0, total_bytes = 0;
        if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) cudaGetLastError();
        fail(ErrorCode::OOM, "CUDA out of memory on cuda:", device_index_, ": tried to allocate ", bytes, " bytes (",
             rounded, " rounded); this engine has ", allocated_bytes_, " bytes allocated and ",
             allocated_bytes_ + cached_bytes_, " bytes reserved; the device has ", free_bytes, " of ", total_bytes,
             " bytes free");
      }
      fail(ErrorCode::Cuda, "cudaMalloc of ", rounded, " bytes on cuda:", device_index_,
           " failed: ", cudaGetErrorString(err));
    }
    track_live(ptr, rounded);
    return ptr;
  }

  void deallocate(void* ptr, size_t /*bytes*/) override {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    // The block's real size is the one recorded at allocation: a reused cached block
    // may be larger than the rounded request.
    auto it = live_blocks_.find(ptr);
    if (it == live_blocks_.end()) return;  // not ours; nothing safe to do
    const size_t size = it->second;
    live_blocks_.erase(it);
    allocated_bytes_ -= size;
    free_blocks_.emplace(size, ptr);
    cached_bytes_ += size;
  }

  MemoryStats stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    MemoryStats s;
    s.allocated_bytes = allocated_bytes_;
    s.peak_bytes = peak_bytes_;
    s.reserved_bytes = allocated_bytes_ + cached_bytes_;
    return s;
  }

  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_bytes_ = allocated_bytes_;
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceScope scope(device_index_);
    release_cached_locked();
  }

 private:
  void track_live(void* ptr, size_t size) {
    live_blocks_.emplace(ptr, size);
    allocated_bytes_ += size;
    if (allocated_bytes_ > peak_bytes_) peak_bytes_ = allocated_bytes_;
  }

  // Frees every cached block. Work queued on the stream may still use them, hence the
  // synchronize first. Caller holds mutex_ and has made the device current.
  void release_cached_locked() {
    if (free_blocks_.empty()) return;
    if (cudaStreamSynchronize(stream_) != cudaSuccess) cudaGetLastError();
    for (const auto& [size, ptr] : free_blocks_) {
      if (cudaFree(ptr) != cudaSuccess) cudaGetLastError();
    }
    free_blocks_.clear();
    cached_bytes_ = 0;
  }

  const int device_index_;
  const cudaStream_t stream_;
  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_blocks_;       // block size → pointer
  std::unordered_map<void*, size_t> live_blocks_;  // pointer → block size
  uint64_t allocated_bytes_ = 0, peak_bytes_ = 0, cached_bytes_ = 0;
};

}  // namespace

std::shared_ptr<Allocator> make_cuda_allocator(int device_index, void* stream) {
  return std::make_shared<CudaCachingAllocator>(device_index, stream);
}

}  // namespace r1v

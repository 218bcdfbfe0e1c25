// Memory for tensors. Each engine owns one allocator for its device: the CPU one hands
// out 64-byte-aligned blocks; the CUDA one keeps freed blocks in a cache so that steady
// state training makes no cudaMalloc calls.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "device.h"

namespace r1v {

struct MemoryStats {
  uint64_t allocated_bytes = 0;  // held by live tensors
  uint64_t peak_bytes = 0;       // highest allocated_bytes since creation or reset
  uint64_t reserved_bytes = 0;   // obtained from the system (allocated + cached)
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Throws Error(OOM) when memory cannot be had.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  virtual MemoryStats stats() const = 0;
  virtual void reset_peak() = 0;
  // Returns cached, unused blocks to the system.
  virtual void empty_cache() {}
};

std::shared_ptr<Allocator> make_cpu_allocator();

// Total physical memory of the machine. With memory overcommit a huge host allocation can
// succeed and kill the process when touched, so host allocations are checked against it.
uint64_t physical_memory_bytes();
// Throws Error(OOM) naming `what` when `bytes` exceeds the machine's memory.
void check_host_allocation(uint64_t bytes, const char* what);
// stream is the engine's cudaStream_t; blocks are reused in that stream's order.
std::shared_ptr<Allocator> make_cuda_allocator(int device_index, void* stream);

// Counts bytes for allocators; keeps peak.
class ByteCounter {
 public:
  void add(uint64_t bytes) {
    uint64_t now = current_.fetch_add(bytes) + bytes;
    uint64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
  }
  void sub(uint64_t bytes) { current_.fetch_sub(bytes); }
  uint64_t current() const { return current_.load(); }
  uint64_t peak() const { return peak_.load(); }
  void reset_peak() { peak_.store(current_.load()); }

 private:
  std::atomic<uint64_t> current_{0}, peak_{0};
};

}  // namespace r1v

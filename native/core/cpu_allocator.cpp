#include <unistd.h>

#include <cstdlib>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "allocator.h"
#include "error.h"

namespace r1v {

namespace {

// 64-byte alignment suits AVX-512 loads and cache lines. No cache of our own: the system
// allocator recycles host memory well. glibc keeps freed heap blocks for the next requests
// (a training step that allocates the same sizes again takes no page faults) and gives back
// only the top of the heap and blocks above its mmap threshold, which it raises as large
// blocks come and go, so after a churn of tensors most freed memory stays resident.
// empty_cache() (engine dispose) returns the free pages of every arena with malloc_trim.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    size_t rounded = round_up(bytes);
    check_host_allocation(rounded, "a tensor");
    void* ptr = std::aligned_alloc(64, rounded);
    if (!ptr)
      fail(ErrorCode::OOM, "out of host memory allocating ", bytes, " bytes (", counter_.current(), " bytes in use)");
    counter_.add(rounded);
    return ptr;
  }
  void deallocate(void* ptr, size_t bytes) override {
    std::free(ptr);
    counter_.sub(round_up(bytes));
  }
  MemoryStats stats() const override {
    MemoryStats s;
    s.allocated_bytes = counter_.current();
    s.peak_bytes = counter_.peak();
    s.reserved_bytes = counter_.current();
    return s;
  }
  void reset_peak() override { counter_.reset_peak(); }
  void empty_cache() override {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
  }

 private:
  static size_t round_up(size_t bytes) { return bytes == 0 ? 64 : (bytes + 63) / 64 * 64; }
  ByteCounter counter_;
};

}  // namespace

uint64_t physical_memory_bytes() {
  static const uint64_t total =
      static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
  return total;
}

void check_host_allocation(uint64_t bytes, const char* what) {
  if (bytes > physical_memory_bytes())
    fail(ErrorCode::OOM, "cannot allocate ", bytes, " bytes for ", what, ": more than the machine's ",
         physical_memory_bytes(), " bytes of memory");
}

std::shared_ptr<Allocator> make_cpu_allocator() { return std::make_shared<CpuAllocator>(); }

}  // namespace r1v

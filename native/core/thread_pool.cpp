#include "thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

namespace r1v {

namespace {
thread_local bool in_parallel_region = false;

// Ops come in bursts (one parallel region per op); spinning this long before parking
// lets the next region start without a futex wake-up, which costs tens of µs.
constexpr auto kSpin = std::chrono::microseconds(50);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() or kSpin has passed; returns done().
template <typename Done>
bool spin_until(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (done()) return true;
    cpu_relax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return done();
  }
}
}  // namespace

int default_thread_count() {
  if (const char* env = std::getenv("R1V_NUM_THREADS")) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0 && n <= 1024) return static_cast<int>(n);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool& ThreadPool::global() {
  // Never destroyed: on exit() (process.exit) no environment teardown runs, and work still
  // running on a stream may be inside a region while static destructors run.
  static ThreadPool* pool = new ThreadPool(default_thread_count());
  return *pool;
}

ThreadPool::ThreadPool(int threads) : num_threads_(std::max(1, threads)) {}

void ThreadPool::start_workers() {
  // Each worker starts from the current generation, so it waits for the next region.
  const uint64_t now = generation_.load(std::memory_order_relaxed);
  try {
    for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i, now] { worker_loop(i, now); });
  } catch (...) {
    join_workers();  // a region needs every worker: none rather than some
    throw;
  }
}

void ThreadPool::join_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
  stopping_ = false;
}

void ThreadPool::stop_workers() {
  std::lock_guard<std::mutex> region(region_mutex_);
  if (!workers_.empty()) join_workers();
}

void ThreadPool::worker_loop(int index, uint64_t seen) {
  in_parallel_region = true;  // work run by a worker never opens a nested region
  auto posted = [&] { return generation_.load(std::memory_order_acquire) != seen; };
  for (;;) {
    if (!spin_until(posted)) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, posted);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_) return;
    (*job_)(index, num_threads_);
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // pairs with the waiter's predicate check
      done_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (num_threads_ == 1 || in_parallel_region) {
    // Serial fallback keeps the (thread_index, num_threads) contract: every index runs.
    for (int i = 0; i < num_threads_; ++i) fn(i, num_threads_);
    return;
  }
  std::lock_guard<std::mutex> region(region_mutex_);
  if (workers_.empty()) start_workers();
  job_ = &fn;
  remaining_.store(num_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);  // a parked worker checks generation_ under it
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  in_parallel_region = true;
  fn(0, num_threads_);
  in_parallel_region = false;
  auto finished = [&] { return remaining_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(finished)) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, finished);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t chunks = std::min<int64_t>(num_threads_, (n + grain - 1) / grain);
  if (chunks <= 1 || in_parallel_region) {
    fn(0, n);
    return;
  }
  run([&](int t, int) {
    if (t >= chunks) return;
    int64_t begin = n * t / chunks, end = n * (t + 1) / chunks;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace r1v

#include "thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace r1v {

namespace {
thread_local bool in_parallel_region = false;
}

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
  // Never destroyed: worker threads may still be parked when the process exits.
  static ThreadPool* pool = new ThreadPool(default_thread_count());
  return *pool;
}

ThreadPool::ThreadPool(int threads) : num_threads_(std::max(1, threads)) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  for (auto& w : workers_) w.detach();
}

void ThreadPool::worker_loop(int index) {
  in_parallel_region = true;  // work run by a worker never opens a nested region
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int, int)>* job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      job = job_;
    }
    (*job)(index, num_threads_);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--remaining_ == 0) done_.notify_one();
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (num_threads_ == 1 || in_parallel_region) {
    // Serial fallback keeps the (thread_index, num_threads) contract: every index runs.
    for (int i = 0; i < num_threads_; ++i) fn(i, num_threads_);
    return;
  }
  std::lock_guard<std::mutex> region(region_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    remaining_ = num_threads_ - 1;
    ++generation_;
  }
  wake_.notify_all();
  in_parallel_region = true;
  fn(0, num_threads_);
  in_parallel_region = false;
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return remaining_ == 0; });
  job_ = nullptr;
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

// The CPU worker pool. One per process, sized to the cores this process may run on
// (or R1V_NUM_THREADS). CPU kernels split their work with parallel_for. The worker threads
// start with the first parallel region and stop (joined) with stop_workers(), which the
// last JavaScript environment using the addon calls at its teardown (see runtime.h), so
// that no thread runs the module's code once it may be unloaded.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace r1v {

class ThreadPool {
 public:
  static ThreadPool& global();

  int num_threads() const { return num_threads_; }

  // Runs fn(thread_index, num_threads) once on every thread of the pool (the caller
  // is thread 0) and returns when all have finished. Parallel regions from different
  // callers run one after another; a nested call runs serially on the caller.
  void run(const std::function<void(int, int)>& fn);

  // Splits [0, n) into contiguous chunks of at least `grain` items over the threads.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Joins the worker threads, after the parallel region in flight (if any). The next
  // region starts them again.
  void stop_workers();

 private:
  explicit ThreadPool(int threads);
  void start_workers();  // with region_mutex_ held; throws (with none started) when it cannot
  void join_workers();   // with region_mutex_ held
  void worker_loop(int index, uint64_t seen);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex region_mutex_;  // one parallel region at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int, int)>* job_ = nullptr;  // published by the generation_ store
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> remaining_{0};
  bool stopping_ = false;  // published by the generation_ store, like job_
};

// Threads the pool should have: R1V_NUM_THREADS when set to a positive integer,
// else the number of CPUs in this process's affinity mask.
int default_thread_count();

}  // namespace r1v

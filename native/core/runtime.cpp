#include "runtime.h"

#include <mutex>

#include "stream.h"
#include "thread_pool.h"

namespace r1v {

namespace {
std::mutex environments_mutex;  // held through the last detach, so an attach waits for it
int environments = 0;
}  // namespace

void attach_environment() {
  std::lock_guard<std::mutex> lock(environments_mutex);
  ++environments;
}

void detach_environment() {
  std::lock_guard<std::mutex> lock(environments_mutex);
  if (--environments > 0) {
    Stream::join_released_threads();
    return;
  }
  Stream::join_all_threads();
  ThreadPool::global().stop_workers();
}

}  // namespace r1v

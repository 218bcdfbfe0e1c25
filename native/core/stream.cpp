#include "stream.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <vector>

#include "device_error.h"
#include "error.h"

#if R1V_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace r1v {

// Shared by the Stream and its thread, so the thread may outlive the Stream object when
// the last reference to the engine is dropped by work running on that very thread.
struct Stream::State {
  Device device;
  void* cuda_stream = nullptr;
  int* error_word_host = nullptr;    // mapped pinned memory, read after a device sync
  int* error_word_device = nullptr;  // the same int as kernels see it
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::function<void()>> queue;
  bool stop = false;
  std::vector<WorkErrorPtr> kept;  // since the last synchronize, in order, each once
};

namespace {

// Every stream thread of the process: how many Streams exist, and the threads of those
// destroyed from their own work, left for join_released_threads(). Never destroyed: on
// exit() (process.exit) no environment teardown runs first.
struct StreamThreads {
  std::mutex mutex;
  std::condition_variable none_left;
  int live = 0;
  std::vector<std::thread> released;
};
StreamThreads& stream_threads() {
  static auto* threads = new StreamThreads();
  return *threads;
}

#if R1V_WITH_CUDA
void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail(ErrorCode::Cuda, what, ": ", cudaGetErrorString(status));
}
#endif

void keep(Stream::State& state, const WorkErrorPtr& error) {
  std::lock_guard<std::mutex> lock(state.mutex);
  std::erase_if(state.kept, [](const WorkErrorPtr& e) { return e->delivered.load(); });
  if (std::find(state.kept.begin(), state.kept.end(), error) == state.kept.end()) state.kept.push_back(error);
}

void run_stream(std::shared_ptr<Stream::State> state) {
#if R1V_WITH_CUDA
  if (state->device.is_cuda()) cudaSetDevice(state->device.index);
#endif
  for (;;) {
    std::function<void()> work;
    {
      std::unique_lock<std::mutex> lock(state->mutex);
      state->wake.wait(lock, [&] { return state->stop || !state->queue.empty(); });
      if (state->queue.empty()) break;  // stop requested and drained
      work = std::move(state->queue.front());
      state->queue.pop_front();
    }
    try {
      work();
    } catch (...) {
      keep(*state, std::make_shared<WorkError>(std::current_exception()));
    }
    work = nullptr;  // release captured tensors before waiting again
  }
#if R1V_WITH_CUDA
  if (state->cuda_stream) {
    cudaStreamSynchronize(static_cast<cudaStream_t>(state->cuda_stream));
    cudaStreamDestroy(static_cast<cudaStream_t>(state->cuda_stream));
  }
  if (state->error_word_host) cudaFreeHost(state->error_word_host);
#endif
}

}  // namespace

Stream::Stream(Device device) : state_(std::make_shared<State>()) {
  state_->device = device;
#if R1V_WITH_CUDA
  if (device.is_cuda()) {
    check_cuda(cudaSetDevice(device.index), "cudaSetDevice");
    cudaStream_t s = nullptr;
    check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    state_->cuda_stream = s;
    void* word = nullptr;
    check_cuda(cudaHostAlloc(&word, sizeof(int), cudaHostAllocMapped), "cudaHostAlloc (device error word)");
    state_->error_word_host = static_cast<int*>(word);
    *state_->error_word_host = 0;
    void* device_word = nullptr;
    check_cuda(cudaHostGetDevicePointer(&device_word, word, 0), "cudaHostGetDevicePointer");
    state_->error_word_device = static_cast<int*>(device_word);
  }
#endif
  thread_ = std::thread(run_stream, state_);
  {
    StreamThreads& all = stream_threads();
    std::lock_guard<std::mutex> lock(all.mutex);
    ++all.live;
  }
  join_released_threads();  // of engines freed by their own work since
}

Stream::~Stream() {
  const bool own_thread = on_stream_thread();
  if (!own_thread) {
    try {
      synchronize();
    } catch (...) {
      // An error nobody asked for is dropped with the engine.
    }
  }
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
    state_->wake.notify_all();
  }
  if (!own_thread) thread_.join();
  StreamThreads& all = stream_threads();
  std::lock_guard<std::mutex> lock(all.mutex);
  // On its own thread: the work that dropped the engine is running; the thread ends after it.
  if (own_thread) all.released.push_back(std::move(thread_));
  if (--all.live == 0) all.none_left.notify_all();
}

void Stream::join_released_threads() {
  StreamThreads& all = stream_threads();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(all.mutex);
    threads.swap(all.released);
  }
  for (std::thread& t : threads) t.join();
}

void Stream::join_all_threads() {
  StreamThreads& all = stream_threads();
  {
    std::unique_lock<std::mutex> lock(all.mutex);
    all.none_left.wait(lock, [&] { return all.live == 0; });
  }
  join_released_threads();
}

void Stream::enqueue(std::function<void()> work) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->stop) fail(ErrorCode::Disposed, "the engine's stream has stopped (engine disposed)");
  state_->queue.push_back(std::move(work));
  state_->wake.notify_one();
}

void Stream::drop_queued() {
  std::deque<std::function<void()>> dropped;
  std::lock_guard<std::mutex> lock(state_->mutex);
  dropped.swap(state_->queue);
}

void Stream::wait_device() {
#if R1V_WITH_CUDA
  if (!state_->cuda_stream) return;
  check_cuda(cudaStreamSynchronize(static_cast<cudaStream_t>(state_->cuda_stream)), "cudaStreamSynchronize");
  volatile int* word = state_->error_word_host;
  if (int code = *word) {
    *word = 0;
    fail(ErrorCode::Argument, device_error_message(code));
  }
#endif
}

int* Stream::device_error_word() const { return state_->error_word_device; }

void* Stream::record_event() {
#if R1V_WITH_CUDA
  if (!state_->cuda_stream) return nullptr;
  cudaEvent_t event = nullptr;
  check_cuda(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate");
  cudaError_t status = cudaEventRecord(event, static_cast<cudaStream_t>(state_->cuda_stream));
  if (status != cudaSuccess) cudaEventDestroy(event);
  check_cuda(status, "cudaEventRecord");
  return event;
#else
  return nullptr;
#endif
}

void Stream::wait_event([[maybe_unused]] void* event) {
#if R1V_WITH_CUDA
  if (!event) return;
  auto e = static_cast<cudaEvent_t>(event);
  cudaError_t status = state_->cuda_stream ? cudaStreamWaitEvent(static_cast<cudaStream_t>(state_->cuda_stream), e, 0)
                                           : cudaSuccess;
  cudaEventDestroy(e);  // released once the wait is satisfied
  check_cuda(status, "cudaStreamWaitEvent");
#endif
}

void Stream::synchronize() {
  if (on_stream_thread()) fail(ErrorCode::Argument, "synchronize() called from the engine's own stream");
  auto done = std::make_shared<std::promise<std::exception_ptr>>();
  std::future<std::exception_ptr> finished = done->get_future();
  enqueue([this, done] { done->set_value(synchronize_on_stream()); });  // `this` outlives the work: we wait for it
  std::exception_ptr error = finished.get();
  if (error) std::rethrow_exception(error);
}

std::exception_ptr Stream::synchronize_on_stream() {
  std::exception_ptr device_error;
  try {
    wait_device();
  } catch (...) {
    device_error = std::current_exception();
  }
  std::vector<WorkErrorPtr> kept;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    kept.swap(state_->kept);
  }
  for (const WorkErrorPtr& e : kept) {
    if (!e->delivered.exchange(true)) return e->error;
  }
  return device_error;
}

void Stream::keep_error(const WorkErrorPtr& error) { keep(*state_, error); }

bool Stream::on_stream_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

void* Stream::cuda_stream() const { return state_->cuda_stream; }
Device Stream::device() const { return state_->device; }

}  // namespace r1v

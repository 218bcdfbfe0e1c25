#include "stream.h"

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

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
  std::exception_ptr error;
  std::thread::id thread_id;
};

namespace {

#if R1V_WITH_CUDA
void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail(ErrorCode::Cuda, what, ": ", cudaGetErrorString(status));
}
#endif

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
      std::lock_guard<std::mutex> lock(state->mutex);
      if (!state->error) state->error = std::current_exception();
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
  std::thread thread(run_stream, state_);
  state_->thread_id = thread.get_id();
  thread.detach();  // lifetime is managed through State; see ~Stream
}

Stream::~Stream() {
  if (!on_stream_thread()) {
    try {
      synchronize();
    } catch (...) {
      // An error nobody asked for is dropped with the engine.
    }
  }
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->stop = true;
  state_->wake.notify_all();
}

void Stream::enqueue(std::function<void()> work) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->stop) fail(ErrorCode::Disposed, "the engine's stream has stopped (engine disposed)");
  state_->queue.push_back(std::move(work));
  state_->wake.notify_one();
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

void Stream::synchronize() {
  if (on_stream_thread()) fail(ErrorCode::Argument, "synchronize() called from the engine's own stream");
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  enqueue([this, done] {
    try {
      wait_device();
    } catch (...) {
      std::lock_guard<std::mutex> lock(state_->mutex);
      if (!state_->error) state_->error = std::current_exception();
    }
    done->set_value();
  });  // `this` outlives the work: we wait for it below
  finished.wait();
  if (std::exception_ptr error = take_error()) std::rethrow_exception(error);
}

std::exception_ptr Stream::take_error() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  std::exception_ptr error = state_->error;
  state_->error = nullptr;
  return error;
}

bool Stream::on_stream_thread() const { return std::this_thread::get_id() == state_->thread_id; }

void* Stream::cuda_stream() const { return state_->cuda_stream; }
Device Stream::device() const { return state_->device; }

}  // namespace r1v

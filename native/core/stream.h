// An engine's ordered queue of work, run on a thread of its own so that the JavaScript
// thread never waits for compute. On a CUDA engine the same thread launches kernels on
// the engine's cudaStream_t. Ops enqueue work; readbacks and synchronize() wait for it.
#pragma once
#include <exception>
#include <functional>
#include <memory>

#include "device.h"

namespace r1v {

class Stream {
 public:
  explicit Stream(Device device);
  ~Stream();  // drains the queue, then stops the thread
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Runs work after everything enqueued before it. An exception thrown by work is kept
  // (the first one) and reported by the next synchronize() or take_error().
  void enqueue(std::function<void()> work);

  // Blocks until all enqueued work (and, on CUDA, the GPU work it launched) is done,
  // then throws the kept error, if any.
  void synchronize();

  // The kept error, cleared; null when none. Call from work running on this stream.
  std::exception_ptr take_error();

  // Waits for the GPU work launched so far, then raises (as Error(Argument)) the first
  // bad-data report kernels left in device_error_word(). Call from work on this stream.
  void wait_device();

  // CUDA: a device pointer to one int that kernels set (atomicCAS from 0) to a
  // DeviceErrorCode when their input data is invalid (say a target outside [0, V)); they
  // write NaN for the affected outputs and go on. nullptr on the CPU.
  int* device_error_word() const;

  // Whether the caller is this stream's own thread (i.e. running enqueued work).
  bool on_stream_thread() const;

  // cudaStream_t of a CUDA engine (nullptr on the CPU).
  void* cuda_stream() const;
  Device device() const;

  struct State;  // defined in stream.cpp; shared with the stream's thread

 private:
  std::shared_ptr<State> state_;
};

}  // namespace r1v

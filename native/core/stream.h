// An engine's ordered queue of work, run on a thread of its own so that the JavaScript
// thread never waits for compute. On a CUDA engine the same thread launches kernels on
// the engine's cudaStream_t. Ops enqueue work; readbacks and synchronize() wait for it.
//
// Errors surface once. Work that fails leaves a WorkError on the tensors it should have
// written (see enqueue_op) and on the stream. Reading such a tensor rethrows the error and
// marks it delivered; synchronize() raises the first error kept since the previous
// synchronize() that was not delivered yet (marking it so) and forgets the others.
//
// Threads: the stream's thread is joined when the Stream is destroyed, or, when that
// happens on the stream's own thread (the last reference to the engine dropped by its own
// work), by the next join_released_threads() (a new Stream, an environment's teardown).
#pragma once
#include <atomic>
#include <exception>
#include <functional>
#include <memory>
#include <thread>

#include "device.h"

namespace r1v {

// An error raised by work on a stream, shared by the tensors that work should have written.
struct WorkError {
  explicit WorkError(std::exception_ptr e) : error(std::move(e)) {}
  const std::exception_ptr error;
  std::atomic<bool> delivered{false};  // a readback or synchronize() has raised it
};
using WorkErrorPtr = std::shared_ptr<WorkError>;

class Stream {
 public:
  explicit Stream(Device device);
  ~Stream();  // drains the queue (unless called from the stream's own work), then stops the thread
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Runs work after everything enqueued before it. An exception thrown by work is kept as a
  // WorkError for the next synchronize().
  void enqueue(std::function<void()> work);

  // Forgets the queued work that has not started (the environment that queued it is being
  // torn down). The work in progress, if any, still finishes.
  void drop_queued();

  // Blocks until all enqueued work (and, on CUDA, the GPU work it launched) is done,
  // then throws the first undelivered kept error, if any (see synchronize_on_stream).
  void synchronize();

  // synchronize() as work on this stream: waits for the GPU work launched so far and
  // returns the first kept error not delivered yet (marked delivered now), else the
  // bad-data report of the device (see wait_device), else null. Forgets every kept error.
  std::exception_ptr synchronize_on_stream();

  // Keeps an error of work on this stream for the next synchronize() (once; an error
  // already kept is not kept twice). Call from work on this stream.
  void keep_error(const WorkErrorPtr& error);

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

  // Cross-stream order on CUDA. record_event(): a cudaEvent_t marking the GPU work launched on
  // this stream so far (nullptr on the CPU, where finishing the work item is the mark).
  // wait_event(e): GPU work launched on this stream from now on waits for e; destroys e (null: no-op).
  // Call both from work on this stream.
  void* record_event();
  void wait_event(void* event);
  Device device() const;

  // Joins the threads of streams destroyed from their own work (they are ending). Call
  // from a thread that is not a stream's.
  static void join_released_threads();
  // Waits until no Stream exists in the process, then joins every thread left. For the
  // teardown of the last environment using the module (see runtime.h).
  static void join_all_threads();

  struct State;  // defined in stream.cpp; shared with the stream's thread

 private:
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace r1v

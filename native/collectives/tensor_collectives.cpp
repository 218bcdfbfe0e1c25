// The tensor collectives of the communicator (communicator.h): argument checks on the calling
// thread, then one queued work item on the tensors' engine stream that takes part in the
// exchange in its turn: MPI for CPU engines, NCCL (nccl.h) for CUDA engines. In a world of one
// they are the identity (all-gather and reduce-scatter return a copy), still queued in order.
#include <future>
#include <mutex>
#include <string>

#include "../ops/cast.h"
#include "../ops/dispatch.h"
#include "../ops/op_checks.h"
#include "collective_run.h"
#include "nccl.h"

namespace r1v {

namespace {

constexpr size_t kErrSize = 1024;

void check_list(const char* fn, const std::vector<Tensor>& tensors) {
  if (tensors.empty()) fail(ErrorCode::Argument, fn, ": tensors must hold at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::string name = concat("tensors[", i, "]");
    check_live(fn, tensors[i], name.c_str());
    check_same_engine(fn, tensors[i], name.c_str(), tensors[0], "tensors[0]");
    for (size_t j = 0; j < i; ++j) {
      if (tensors[j].data() == tensors[i].data())
        fail(ErrorCode::Argument, fn, ": tensors[", j, "] and tensors[", i, "] are the same memory (each in-place ",
             "tensor may appear once)");
    }
  }
}

// MPI reduces f32 and i32 (CPU tensors); NCCL every engine dtype.
void check_reducible(const char* fn, const Tensor& t, const char* name) {
  if (t.device().is_cpu() && t.dtype() != DType::F32 && t.dtype() != DType::I32)
    fail(ErrorCode::DType, fn, ": ", name, " is ", dtype_name(t.dtype()),
         "; reductions of CPU tensors take f32 or i32 (cast first)");
}

int64_t total_numel(const std::vector<Tensor>& tensors) {
  int64_t n = 0;
  for (const Tensor& t : tensors) n += t.numel();
  return n;
}

// MPI's view of a tensor's elements: reductions by value type, moves by bytes.
int mpi_type(DType t) { return t == DType::F32 ? R1V_MPI_F32 : t == DType::I32 ? R1V_MPI_I32 : R1V_MPI_BYTE; }
int64_t mpi_count(DType t, int64_t numel) {
  return mpi_type(t) == R1V_MPI_BYTE ? numel * static_cast<int64_t>(dtype_size(t)) : numel;
}
int mpi_op(ReduceOp op) { return op == ReduceOp::Max ? R1V_MPI_MAX : op == ReduceOp::Min ? R1V_MPI_MIN : R1V_MPI_SUM; }

// After a timeout MPI may still write into the tensors' memory: keep it allocated (until the
// engine is disposed; the job is expected to end).
void keep_after(int status, const std::vector<Tensor>& tensors) {
  if (status == R1V_MPI_TIMEOUT) new std::vector<Tensor>(tensors);
}

// One backend call per tensor (MPI) or launch (NCCL, on `via`: the engine's stream or its side
// stream) of a collective: `mpi_call` returns an R1vMpiStatus, `launch` describes the NCCL
// operation. Runs in the collective's turn.
template <typename MpiCall>
void exchange(CollectiveRun& run, const Tensor& on, Stream& via, const std::vector<Tensor>& keep, MpiCall&& mpi_call,
              const nccl::Launch& launch) {
  char err[kErrSize] = "";
  on_device(
      *on.context(), "collective",
      [&] {
        int status = mpi_call(err);
        keep_after(status, keep);
        run.check(status, err);
      },
      [&](Stream&) {
        nccl::Group group{on.device().index, run.info().rank, run.info().size, [&](void* data, size_t bytes) {
                            run.check(mpi().broadcast(data, static_cast<int64_t>(bytes), R1V_MPI_BYTE, 0,
                                                      run.deadline_ns(), err, sizeof err),
                                      err);
                          }};
        std::string message;
        int status = nccl::run(group, launch, via.cuda_stream(), run.deadline_ns(), &message);
        keep_after(status, keep);
        run.check(status, message.c_str());
      });
}

// What the ranks agree on for a collective whose first input is `first`.
Agreement agreement_for(const Tensor& first, int64_t count, int64_t root) {
  return {first.device().is_cpu() ? 0 : 1, static_cast<int64_t>(first.dtype()), count, root};
}

// A collective's part once its work runs: waits for its turn, agrees with the other ranks, then
// (unless some rank's input carries an error) runs the exchange.
template <typename Exchange>
void take_part(Communicator& comm, const TurnPtr& turn, const char* name, const Agreement& agreement, bool input_error,
               Exchange&& body) {
  CollectiveRun run(comm, turn, name, agreement.count, dtype_name(static_cast<DType>(agreement.dtype)));
  if (run.agree(agreement, input_error)) return;
  body(run);
}

// Queues a collective's work on the engine of inputs[0]: the turn is taken now, the agreement and
// the exchange happen when the stream reaches it.
template <typename Exchange>
void queue(Communicator& comm, const char* name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
           const Agreement& agreement, Exchange&& body) {
  TurnPtr turn = comm.take_turn();
  enqueue_op_seeing_errors(inputs[0].context(), inputs, outputs,
                           [&comm, turn, name, agreement, body](const WorkErrorPtr& input_error) {
                             take_part(comm, turn, name, agreement, input_error != nullptr, body);
                           });
}

bool single(const Communicator& comm) { return comm.info().backend == CommBackend::Single; }

void check_reduce_list(const char* fn, const std::vector<Tensor>& tensors) {
  check_list(fn, tensors);
  for (size_t i = 0; i < tensors.size(); ++i) check_reducible(fn, tensors[i], concat("tensors[", i, "]").c_str());
}

// The exchange of an all-reduce of `tensors` in place, NCCL launched on `via`.
void all_reduce_each(CollectiveRun& run, const std::vector<Tensor>& tensors, ReduceOp op, Stream& via) {
  for (const Tensor& t : tensors) {
    exchange(
        run, t, via, tensors,
        [&](char* err) {
          return mpi().all_reduce(t.data(), t.numel(), mpi_type(t.dtype()), mpi_op(op), run.deadline_ns(), err,
                                  kErrSize);
        },
        {nccl::Kind::AllReduce, t.data(), t.data(), static_cast<size_t>(t.numel()), t.dtype(), op});
  }
}

}  // namespace

void Communicator::all_reduce(const std::vector<Tensor>& tensors, ReduceOp op) {
  const char* fn = "allReduce";
  check_reduce_list(fn, tensors);
  if (single(*this)) return enqueue_op(tensors[0].context(), tensors, tensors, [] {});
  check_usable(fn);
  queue(*this, fn, tensors, tensors, agreement_for(tensors[0], total_numel(tensors), 0),
        [tensors, op](CollectiveRun& run) { all_reduce_each(run, tensors, op, tensors[0].context()->stream()); });
}

// ---------------------------------------------------------------- overlapped all-reduce

namespace {

// A mark between threads is a std::promise held (shared) by the work that sets it: work destroyed
// unrun (an engine torn down) breaks it (std::future_error), so no one waits for it forever.
// The engine's stream marks where the inputs' producers have run: the CUDA event recorded after
// their kernels (null on the CPU), or the error of recording it.
struct Mark {
  void* event = nullptr;
  WorkErrorPtr error;
};

}  // namespace

struct Communicator::Started {
  std::vector<Tensor> tensors;
  std::shared_future<WorkErrorPtr> done;  // the exchange's error, null when it succeeded
};

uint64_t Communicator::all_reduce_start(const std::vector<Tensor>& tensors, ReduceOp op) {
  const char* fn = "allReduce";
  check_reduce_list(fn, tensors);
  auto started = std::make_shared<Started>();
  started->tensors = tensors;
  auto done = std::make_shared<std::promise<WorkErrorPtr>>();
  started->done = done->get_future().share();
  if (single(*this)) {
    done->set_value(nullptr);  // nothing to exchange: wait() only keeps the order
  } else {
    check_usable(fn);
    const std::shared_ptr<Context>& ctx = tensors[0].context();
    Stream* stream = &ctx->stream();
    Stream* side = &ctx->side_stream();
    auto ready = std::make_shared<std::promise<Mark>>();
    std::shared_future<Mark> marked = ready->get_future().share();
    stream->enqueue([stream, ready] {
      try {
        ready->set_value({stream->record_event(), nullptr});
      } catch (...) {
        ready->set_value({nullptr, std::make_shared<WorkError>(std::current_exception())});
      }
    });
    // On the side stream, once marked: the exchange, in its turn (taken now).
    TurnPtr turn = take_turn();
    const Agreement agreement = agreement_for(tensors[0], total_numel(tensors), 0);
    side->enqueue([this, side, marked, turn, done, tensors, op, agreement, fn] {
      Mark mark;
      try {
        mark = marked.get();
      } catch (const std::future_error&) {
        return;  // the engine is being torn down (done breaks as this work ends)
      }
      WorkErrorPtr error, input_error = mark.error;
      try {
        side->wait_event(mark.event);
        for (const Tensor& t : tensors) {
          if (input_error) break;
          input_error = t.error();
        }
        take_part(*this, turn, fn, agreement, input_error != nullptr,
                  [&](CollectiveRun& run) { all_reduce_each(run, tensors, op, *side); });
      } catch (...) {
        error = std::make_shared<WorkError>(std::current_exception());
      }
      if (!error) error = input_error;
      if (error)
        for (const Tensor& t : tensors) t.set_error(error);
      done->set_value(error);
    });
  }
  std::lock_guard<std::mutex> lock(started_mutex_);
  const uint64_t id = next_started_++;
  started_.emplace(id, std::move(started));
  return id;
}

void Communicator::wait(uint64_t id) {
  std::shared_ptr<Started> started;
  {
    std::lock_guard<std::mutex> lock(started_mutex_);
    auto it = started_.find(id);
    if (it == started_.end())
      fail(ErrorCode::Argument, "wait: collective ", id, " was already waited for, or never started");
    started = it->second;
    for (size_t i = 0; i < started->tensors.size(); ++i)
      check_live("wait", started->tensors[i], concat("tensors[", i, "]").c_str());
    started_.erase(it);
  }
  Stream* stream = &started->tensors[0].context()->stream();
  stream->enqueue([stream, started] {
    WorkErrorPtr error;
    try {
      error = started->done.get();
    } catch (const std::future_error&) {
      error = std::make_shared<WorkError>(std::make_exception_ptr(
          Error(ErrorCode::Distributed, "allReduce: the overlapped exchange was dropped (engine torn down)")));
    }
    if (!error) return;
    for (const Tensor& t : started->tensors) t.set_error(error);
    stream->keep_error(error);
  });
}

void Communicator::broadcast(const std::vector<Tensor>& tensors, int root) {
  const char* fn = "broadcast";
  check_list(fn, tensors);
  if (root < 0 || root >= info_.size)
    fail(ErrorCode::Argument, fn, ": root must be a rank in [0, ", info_.size, "), got ", root);
  if (single(*this)) return enqueue_op(tensors[0].context(), tensors, tensors, [] {});
  check_usable(fn);
  queue(*this, fn, tensors, tensors, agreement_for(tensors[0], total_numel(tensors), root), [tensors, root](CollectiveRun& run) {
    for (const Tensor& t : tensors) {
      exchange(
          run, t, t.context()->stream(), tensors,
          [&](char* err) {
            return mpi().broadcast(t.data(), mpi_count(t.dtype(), t.numel()), mpi_type(t.dtype()), root,
                                   run.deadline_ns(), err, kErrSize);
          },
          {nccl::Kind::Broadcast, t.data(), t.data(), static_cast<size_t>(t.numel()), t.dtype(), ReduceOp::Sum, root});
    }
  });
}

Tensor Communicator::all_gather(const Tensor& x) {
  const char* fn = "allGather";
  check_live(fn, x, "x");
  if (x.ndim() < 1) fail(ErrorCode::Shape, fn, ": x must have at least one dimension, got a scalar");
  if (single(*this)) return copy(x);
  check_usable(fn);
  Shape shape = x.shape();
  shape[0] *= info_.size;
  Tensor out = Tensor::empty(x.context(), shape, x.dtype());
  queue(*this, fn, {x}, {out}, agreement_for(x, x.numel(), 0), [x, out](CollectiveRun& run) {
    exchange(
        run, x, x.context()->stream(), {x, out},
        [&](char* err) {
          return mpi().all_gather(x.data(), out.data(), mpi_count(x.dtype(), x.numel()), mpi_type(x.dtype()),
                                  run.deadline_ns(), err, kErrSize);
        },
        {nccl::Kind::AllGather, x.data(), out.data(), static_cast<size_t>(x.numel()), x.dtype()});
  });
  return out;
}

Tensor Communicator::reduce_scatter(const Tensor& x, ReduceOp op) {
  const char* fn = "reduceScatter";
  check_live(fn, x, "x");
  check_reducible(fn, x, "x");
  if (x.ndim() < 1 || x.dim(0) % info_.size != 0)
    fail(ErrorCode::Shape, fn, ": x's first dimension must be a multiple of the world size ", info_.size, ", got shape ",
         shape_str(x.shape()));
  if (single(*this)) return copy(x);
  check_usable(fn);
  Shape shape = x.shape();
  shape[0] /= info_.size;
  Tensor out = Tensor::empty(x.context(), shape, x.dtype());
  queue(*this, fn, {x}, {out}, agreement_for(x, x.numel(), 0), [x, out, op](CollectiveRun& run) {
    exchange(
        run, x, x.context()->stream(), {x, out},
        [&](char* err) {
          return mpi().reduce_scatter(x.data(), out.data(), out.numel(), mpi_type(x.dtype()), mpi_op(op),
                                      run.deadline_ns(), err, kErrSize);
        },
        {nccl::Kind::ReduceScatter, x.data(), out.data(), static_cast<size_t>(out.numel()), x.dtype(), op});
  });
  return out;
}

}  // namespace r1v

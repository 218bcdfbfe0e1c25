// The collectives layer: one communicator per process over all the processes of a job, with
// all-reduce (sum, max, min), broadcast, all-gather, reduce-scatter and barrier on engine
// tensors (queued on the tensor's engine stream: they run in order with that engine's other
// ops) and on host values (metrics, bookkeeping). CPU tensors and host values go through MPI
// (libr1v_mpi.so, mpi_api.h); CUDA tensors through NCCL (nccl.h), whose unique id MPI shares.
// A process not started by an MPI launcher is a world of one: no MPI is loaded and every
// collective is the identity, still run in stream order.
//
// Order. Every process must call the collectives in the same order. A collective takes a Turn
// (a process-wide ticket) on the calling thread when it is called; its work, on an engine's
// stream thread or a host worker, waits for its turn before touching MPI or NCCL, and releases
// it when done. So collectives issued by one JavaScript thread run in that order on every rank
// whichever engine (policy, reference, critic: separate stream threads) they are queued on, and
// one thread at a time calls MPI (MPI_THREAD_SERIALIZED is enough). Use the communicator from
// one JavaScript thread per process.
//
// Errors (ErrorCode::Distributed). Every collective has a deadline: timeout_ms from the moment
// its work starts (waiting for its turn included). Past it the collective fails naming the rank,
// the collective, the element count and the timeout, and the communicator is broken: every later
// collective fails at once with the same cause, and the job should end with abort(). Before
// exchanging data the ranks agree (one small all-reduce) on the backend, dtype, element count
// and root, and on whether an input carries the error of the op that made it; a disagreement or
// a bad input fails the collective on every rank (without breaking the communicator) instead of
// exchanging garbage. Tensor collectives deliver their errors as every op does: on the outputs
// (WorkError) and at the next synchronize().
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "../core/tensor.h"

namespace r1v {

enum class ReduceOp { Sum, Max, Min };
const char* reduce_op_name(ReduceOp op);

enum class CommBackend { Single, Mpi };

struct CommunicatorInfo {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // among the processes of this host (bind a GPU by it: cuda:<local_rank>)
  int local_size = 1;
  CommBackend backend = CommBackend::Single;
};

// A place in the process-wide order of collectives (see "Order" above). Dropping it unused
// (work dropped by an engine's teardown) lets the later ones pass.
class Turn;
using TurnPtr = std::shared_ptr<Turn>;

class Communicator {
 public:
  // Whether an MPI launcher started this process (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE).
  static bool launched_by_mpi();
  static constexpr int64_t kDefaultTimeoutMs = 300000;
  // The process's communicator, made on the first call (MPI_Init_thread there when launched by
  // MPI; Error(Distributed) when the MPI backend is missing) with timeout_ms (> 0; default
  // kDefaultTimeoutMs). Later calls return it; one naming another timeout is Error(Argument).
  static Communicator& world(std::optional<int64_t> timeout_ms);

  const CommunicatorInfo& info() const { return info_; }
  int64_t timeout_ms() const { return timeout_ms_; }

  // In place; tensors on one engine, f32 or i32 (CUDA: also bf16, f16).
  void all_reduce(const std::vector<Tensor>& tensors, ReduceOp op);
  // all_reduce overlapped with the engine's later work: returns at once with an id for wait().
  // The exchange runs on the engine's side stream once the engine's stream reaches this point
  // (the tensors' producers have run), while the stream goes on with the work queued after it.
  // Until wait(id) the tensors must not be read or written by queued work. The collective takes
  // its turn now, like the others.
  uint64_t all_reduce_start(const std::vector<Tensor>& tensors, ReduceOp op);
  // Queues, on the engine's stream, the end of the started collective `id`: work queued after it
  // sees the reduced values, or the collective's error (on the tensors and at synchronize()).
  // Error(Argument) for an id not started or already waited for.
  void wait(uint64_t id);

  // In place: root's values everywhere; any dtype.
  void broadcast(const std::vector<Tensor>& tensors, int root);
  // [W·n, ...] from [n, ...], rank r's rows at [r·n, (r+1)·n); any dtype.
  Tensor all_gather(const Tensor& x);
  // [W·n, ...] → [n, ...]: block `rank` of the reduction over ranks. Dtypes as all_reduce.
  Tensor reduce_scatter(const Tensor& x, ReduceOp op);

  // Host collectives. take_turn() on the calling (JavaScript) thread when the collective is
  // called; the call itself blocks (run it off the JavaScript thread).
  TurnPtr take_turn();
  std::vector<double> all_reduce_values(const TurnPtr& turn, std::vector<double> values, ReduceOp op);
  // Index = rank; any length per rank.
  std::vector<std::vector<uint8_t>> all_gather_bytes(const TurnPtr& turn, const std::vector<uint8_t>& bytes);
  // bytes is read on root only.
  std::vector<uint8_t> broadcast_bytes(const TurnPtr& turn, std::vector<uint8_t> bytes, int root);
  void barrier(const TurnPtr& turn);

  // Prints "[r1v rank R/W] message" to stderr and ends the whole job (MPI_Abort). A world of
  // one has no job to end: Error(Distributed) carrying the message.
  void abort(const std::string& message, int exit_code);

  // Throws Error(Distributed) naming `collective` when the communicator is broken.
  void check_usable(const char* collective) const;

 private:
  Communicator(CommunicatorInfo info, int64_t timeout_ms) : info_(info), timeout_ms_(timeout_ms) {}
  CommunicatorInfo info_;
  int64_t timeout_ms_;
  struct Started;  // tensor_collectives.cpp
  std::mutex started_mutex_;
  uint64_t next_started_ = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Started>> started_;
};

}  // namespace r1v

// Internal to native/collectives: what every collective does around its exchange. A
// CollectiveRun is made in the collective's work (stream thread or host worker): it fails at once
// when the communicator is broken, waits for the collective's Turn until the deadline, and holds
// the turn until it is destroyed. It turns backend results into Error(Distributed) messages that
// name the rank, the collective, the element count and the timeout, and breaks the communicator on
// a timeout or a failed exchange.
#pragma once
#include <cstdint>
#include <string>

#include "communicator.h"
#include "mpi_api.h"

namespace r1v {

class Turn {
 public:
  explicit Turn(uint64_t number) : number_(number) {}
  ~Turn() { release(); }
  Turn(const Turn&) = delete;
  Turn& operator=(const Turn&) = delete;
  // Blocks until every earlier turn of the process is released; false when deadline_ns passes first.
  bool wait(int64_t deadline_ns) const;
  void release();  // idempotent; a turn released before its time is skipped when it comes

 private:
  uint64_t number_;
  bool released_ = false;
};

int64_t steady_now_ns();

// What the ranks must agree on before exchanging data (see "Errors" in communicator.h).
struct Agreement {
  int64_t device_kind = 0;  // 0 CPU (MPI), 1 CUDA (NCCL)
  int64_t dtype = 0;
  int64_t count = 0;  // elements this rank sends per tensor list (or values)
  int64_t root = 0;
};

class CollectiveRun {
 public:
  CollectiveRun(Communicator& comm, const TurnPtr& turn, const char* name, int64_t count, const char* dtype);
  ~CollectiveRun() { turn_->release(); }
  CollectiveRun(const CollectiveRun&) = delete;
  CollectiveRun& operator=(const CollectiveRun&) = delete;

  int64_t deadline_ns() const { return deadline_ns_; }
  const CommunicatorInfo& info() const { return comm_.info(); }

  // One small all-reduce: true when this rank's input carries an error (skip the exchange; the
  // outputs keep that error); throws when another rank's does or the ranks disagree.
  bool agree(const Agreement& mine, bool input_error);

  // Throws for anything but R1V_MPI_OK (message from the backend in err).
  void check(int status, const char* err);
  // Marks the communicator broken with this run's description of `why`, then throws it.
  [[noreturn]] void break_with(const std::string& why, bool timed_out);
  // "allReduce on rank 1 of 2 (4096 f32 elements)"
  std::string describe() const;

 private:
  Communicator& comm_;
  TurnPtr turn_;
  const char* name_;
  int64_t count_;
  const char* dtype_;
  int64_t deadline_ns_;
};

// The MPI backend (mpi_library.h) of a communicator whose backend is Mpi.
const R1vMpiApi& mpi();

}  // namespace r1v

// The process's communicator, the order of collectives (Turn), the broken state, the checks
// around every exchange (CollectiveRun) and the host collectives. See communicator.h.
#include "communicator.h"

#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

#include "collective_run.h"
#include "mpi_library.h"

namespace r1v {

namespace {

constexpr size_t kErrSize = 1024;

// The order of collectives (communicator.h, "Order"): turns are numbered as they are taken and
// served in number order; one released before its time is skipped when it comes.
struct TurnOrder {
  std::mutex mutex;
  std::condition_variable changed;
  uint64_t next_number = 0;
  uint64_t serving = 0;
  std::set<uint64_t> released_early;
};
TurnOrder& turn_order() {
  static TurnOrder* order = new TurnOrder();  // never destroyed: stream threads may outlive statics
  return *order;
}

// The cause the communicator broke with (empty while usable).
std::mutex broken_mutex;
std::string broken_cause;

std::string broken() {
  std::lock_guard<std::mutex> lock(broken_mutex);
  return broken_cause;
}

int64_t env_int(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoll(v, nullptr, 10) : -1;
}

}  // namespace

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Max:
      return "max";
    case ReduceOp::Min:
      return "min";
  }
  return "sum";
}

int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------- turns

bool Turn::wait(int64_t deadline_ns) const {
  TurnOrder& order = turn_order();
  std::unique_lock<std::mutex> lock(order.mutex);
  auto deadline = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline_ns));
  return order.changed.wait_until(lock, deadline, [&] { return order.serving == number_; });
}

void Turn::release() {
  TurnOrder& order = turn_order();
  std::lock_guard<std::mutex> lock(order.mutex);
  if (released_) return;
  released_ = true;
  if (number_ == order.serving) {
    ++order.serving;
    while (order.released_early.erase(order.serving) > 0) ++order.serving;
  } else {
    order.released_early.insert(number_);
  }
  order.changed.notify_all();
}

TurnPtr Communicator::take_turn() {
  TurnOrder& order = turn_order();
  std::lock_guard<std::mutex> lock(order.mutex);
  return std::make_shared<Turn>(order.next_number++);
}

// ---------------------------------------------------------------- the world

bool Communicator::launched_by_mpi() {
  return env_int("OMPI_COMM_WORLD_SIZE") > 0 || std::getenv("PMIX_RANK") != nullptr || env_int("PMI_SIZE") > 0;
}

Communicator& Communicator::world(std::optional<int64_t> timeout_ms) {
  static std::mutex mutex;
  static Communicator* world = nullptr;  // never destroyed (see TurnOrder)
  std::lock_guard<std::mutex> lock(mutex);
  if (timeout_ms && *timeout_ms <= 0)
    fail(ErrorCode::Argument, "Communicator.world: timeoutMs must be > 0, got ", *timeout_ms);
  if (world) {
    if (timeout_ms && world->timeout_ms_ != *timeout_ms)
      fail(ErrorCode::Argument, "Communicator.world: the process's communicator exists with timeoutMs ",
           world->timeout_ms_, "; it cannot be made again with ", *timeout_ms);
    return *world;
  }
  CommunicatorInfo info;
  if (launched_by_mpi()) {
    char err[kErrSize] = "";
    if (mpi_library().init(&info.rank, &info.size, &info.local_rank, &info.local_size, err, sizeof err) != R1V_MPI_OK)
      fail(ErrorCode::Distributed, "Communicator.world: MPI could not start: ", err);
    info.backend = CommBackend::Mpi;
  }
  world = new Communicator(info, timeout_ms.value_or(kDefaultTimeoutMs));
  return *world;
}

const R1vMpiApi& mpi() { return mpi_library(); }

void Communicator::check_usable(const char* collective) const {
  std::string cause = broken();
  if (!cause.empty())
    fail(ErrorCode::Distributed, collective, " on rank ", info_.rank, ": the communicator is broken by an earlier "
         "failure: ", cause);
}

void Communicator::abort(const std::string& message, int exit_code) {
  if (info_.backend == CommBackend::Single) fail(ErrorCode::Distributed, "abort (single process): ", message);
  std::fprintf(stderr, "[r1v rank %d/%d] %s\n", info_.rank, info_.size, message.c_str());
  std::fflush(stderr);
  // The launcher forwards this process's output through a pipe; give it a moment to read the
  // message before the job is killed (it may otherwise drop what it had not read yet).
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  mpi().abort(exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; should it, the process still ends
}

// ---------------------------------------------------------------- one collective's run

CollectiveRun::CollectiveRun(Communicator& comm, const TurnPtr& turn, const char* name, int64_t count,
                             const char* dtype)
    : comm_(comm), turn_(turn), name_(name), count_(count), dtype_(dtype),
      deadline_ns_(steady_now_ns() + comm.timeout_ms() * 1000000) {
  comm_.check_usable(name_);
  if (!turn_->wait(deadline_ns_))
    break_with("an earlier collective of this process did not finish in time", true);
  comm_.check_usable(name_);  // an earlier one may have broken it while this one waited
}

std::string CollectiveRun::describe() const {
  return concat(name_, " on rank ", info().rank, " of ", info().size, " (", count_, " ", dtype_, " elements)");
}

void CollectiveRun::break_with(const std::string& why, bool timed_out) {
  std::string message = timed_out ? concat(describe(), " timed out after ", comm_.timeout_ms(), " ms: ", why,
                                           ". A peer stalled or called the collectives in another order")
                                  : concat(describe(), " failed: ", why);
  {
    std::lock_guard<std::mutex> lock(broken_mutex);
    if (broken_cause.empty()) broken_cause = message;
  }
  fail(ErrorCode::Distributed, message,
       ". The communicator is broken: every later collective fails; end the job with abort()");
}

void CollectiveRun::check(int status, const char* err) {
  if (status == R1V_MPI_OK) return;
  break_with(err, status == R1V_MPI_TIMEOUT);
}

bool CollectiveRun::agree(const Agreement& mine, bool input_error) {
  // Each field and its negation, reduced with MIN: the minimum and the maximum over the ranks.
  const int64_t fields[] = {mine.device_kind, mine.dtype, mine.count, mine.root};
  const char* names[] = {"device kind (CPU or CUDA)", "dtype", "element count", "root"};
  int64_t values[1 + 2 * 4];
  values[0] = input_error ? info().rank : INT64_MAX;
  for (int i = 0; i < 4; ++i) values[1 + 2 * i] = fields[i], values[2 + 2 * i] = -fields[i];
  char err[kErrSize] = "";
  check(mpi().all_reduce(values, 1 + 2 * 4, R1V_MPI_I64, R1V_MPI_MIN, deadline_ns_, err, sizeof err), err);
  if (input_error) return true;
  if (values[0] != INT64_MAX)
    fail(ErrorCode::Distributed, describe(), ": the input on rank ", values[0],
         " carries the error of the op that made it; no data was exchanged");
  for (int i = 0; i < 4; ++i) {
    if (values[1 + 2 * i] != -values[2 + 2 * i])
      fail(ErrorCode::Distributed, describe(), ": the ranks disagree on the ", names[i], " (from ",
           values[1 + 2 * i], " to ", -values[2 + 2 * i], " here ", fields[i], "); no data was exchanged");
  }
  return false;
}

// ---------------------------------------------------------------- host collectives

namespace {

int mpi_op(ReduceOp op) { return op == ReduceOp::Max ? R1V_MPI_MAX : op == ReduceOp::Min ? R1V_MPI_MIN : R1V_MPI_SUM; }

}  // namespace

std::vector<double> Communicator::all_reduce_values(const TurnPtr& turn, std::vector<double> values, ReduceOp op) {
  CollectiveRun run(*this, turn, "allReduceValues", static_cast<int64_t>(values.size()), "f64");
  if (info_.backend == CommBackend::Single) return values;
  run.agree({0, 0, static_cast<int64_t>(values.size()), 0}, false);
  char err[kErrSize] = "";
  run.check(mpi().all_reduce(values.data(), static_cast<int64_t>(values.size()), R1V_MPI_F64, mpi_op(op),
                             run.deadline_ns(), err, sizeof err),
            err);
  return values;
}

std::vector<std::vector<uint8_t>> Communicator::all_gather_bytes(const TurnPtr& turn, const std::vector<uint8_t>& bytes) {
  CollectiveRun run(*this, turn, "allGatherBytes", static_cast<int64_t>(bytes.size()), "byte");
  if (info_.backend == CommBackend::Single) return {bytes};
  std::vector<int64_t> counts(info_.size);
  const int64_t length = static_cast<int64_t>(bytes.size());
  char err[kErrSize] = "";
  run.check(mpi().all_gather(&length, counts.data(), 1, R1V_MPI_I64, run.deadline_ns(), err, sizeof err),
            err);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  // On a timeout MPI may still write into `all`: leak it then (the job is ending).
  auto* all = new std::vector<uint8_t>(static_cast<size_t>(total));
  int status = mpi().all_gather_bytes(bytes.data(), all->data(), counts.data(), run.deadline_ns(), err, sizeof err);
  if (status == R1V_MPI_TIMEOUT) run.check(status, err);
  std::unique_ptr<std::vector<uint8_t>> owned(all);
  run.check(status, err);
  std::vector<std::vector<uint8_t>> out(info_.size);
  int64_t at = 0;
  for (int r = 0; r < info_.size; ++r) {
    out[r].assign(all->begin() + at, all->begin() + at + counts[r]);
    at += counts[r];
  }
  return out;
}

std::vector<uint8_t> Communicator::broadcast_bytes(const TurnPtr& turn, std::vector<uint8_t> bytes, int root) {
  CollectiveRun run(*this, turn, "broadcastBytes", static_cast<int64_t>(bytes.size()), "byte");
  if (info_.backend == CommBackend::Single) return bytes;
  run.agree({0, 0, 0, root}, false);
  int64_t length = static_cast<int64_t>(bytes.size());
  char err[kErrSize] = "";
  run.check(mpi().broadcast(&length, 1, R1V_MPI_I64, root, run.deadline_ns(), err, sizeof err), err);
  auto* data = new std::vector<uint8_t>(std::move(bytes));  // leaked on a timeout, as above
  data->resize(static_cast<size_t>(length));
  int status = mpi().broadcast(data->data(), length, R1V_MPI_BYTE, root, run.deadline_ns(), err, sizeof err);
  if (status == R1V_MPI_TIMEOUT) run.check(status, err);
  std::unique_ptr<std::vector<uint8_t>> owned(data);
  run.check(status, err);
  return std::move(*data);
}

void Communicator::barrier(const TurnPtr& turn) {
  CollectiveRun run(*this, turn, "barrier", 0, "no");
  if (info_.backend == CommBackend::Single) return;
  char err[kErrSize] = "";
  run.check(mpi().barrier(run.deadline_ns(), err, sizeof err), err);
}

}  // namespace r1v

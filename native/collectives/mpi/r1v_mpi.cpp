// libr1v_mpi.so: the MPI backend of the collectives (the C table of ../mpi_api.h). Built only
// when CMake finds MPI; the addon loads it with dlopen on first use and never links libmpi.
//
// Threads: MPI_Init_thread asks for MPI_THREAD_MULTIPLE and accepts MPI_THREAD_SERIALIZED or
// better: the addon calls this library from one thread at a time (its collectives run in one
// process-wide order, see communicator.h), so SERIALIZED is all that is used.
// Waiting: each collective is started non-blocking and polled with MPI_Test, which also drives
// Open MPI's progress (a large message moves a fragment or a round per call): polled back to back
// (yielding the core) for its first second, so a transfer is never held up by sleeping between
// its fragments, then with sleeps growing to 1 ms (a peer that is late: a checkpoint, a stall),
// until the request completes or the deadline passes.
// Exit: MPI_Finalize runs at process exit (atexit, registered after MPI_Init), unless a collective
// timed out (a peer is stalled: MPI_Finalize would wait for it) or abort() was called.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "../mpi_api.h"

namespace {

MPI_Comm g_comm = MPI_COMM_NULL;  // the duplicate of MPI_COMM_WORLD every collective uses
int g_rank = 0, g_size = 1, g_local_rank = 0, g_local_size = 1;
bool g_timed_out = false;  // a request is still outstanding: skip MPI_Finalize

constexpr int64_t kChunk = int64_t{1} << 30;  // elements per call of the chunked collectives

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int report(char* err, size_t err_size, int status, const char* what, int code) {
  char text[MPI_MAX_ERROR_STRING] = "";
  int length = 0;
  if (code != MPI_SUCCESS) MPI_Error_string(code, text, &length);
  std::snprintf(err, err_size, "%s failed: %s", what, code != MPI_SUCCESS ? text : "unknown MPI error");
  return status;
}

// Polls request until it completes (R1V_MPI_OK) or deadline_ns passes (R1V_MPI_TIMEOUT).
int wait(MPI_Request* request, int64_t deadline_ns, const char* what, char* err, size_t err_size) {
  int done = 0;
  const int64_t spin_until = now_ns() + 1000000000;  // 1 s
  for (int sleeps = 0;;) {
    int code = MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (code != MPI_SUCCESS) return report(err, err_size, R1V_MPI_FAILED, what, code);
    if (done) return R1V_MPI_OK;
    if (now_ns() > deadline_ns) {
      g_timed_out = true;
      std::snprintf(err, err_size, "%s did not complete before its deadline", what);
      return R1V_MPI_TIMEOUT;
    }
    if (now_ns() < spin_until) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, 4 * ++sleeps)));
  }
}

// Starts a request with `start` (an MPI_I* call) and waits for it.
template <typename Start>
int run(Start&& start, int64_t deadline_ns, const char* what, char* err, size_t err_size) {
  MPI_Request request = MPI_REQUEST_NULL;
  int code = start(&request);
  if (code != MPI_SUCCESS) return report(err, err_size, R1V_MPI_FAILED, what, code);
  return wait(&request, deadline_ns, what, err, err_size);
}

MPI_Datatype mpi_type(int type) {
  switch (type) {
    case R1V_MPI_F32:
      return MPI_FLOAT;
    case R1V_MPI_I32:
      return MPI_INT32_T;
    case R1V_MPI_F64:
      return MPI_DOUBLE;
    case R1V_MPI_I64:
      return MPI_INT64_T;
    default:
      return MPI_BYTE;
  }
}

size_t type_size(int type) {
  int bytes = 1;
  MPI_Type_size(mpi_type(type), &bytes);
  return static_cast<size_t>(bytes);
}

MPI_Op mpi_op(int op) { return op == R1V_MPI_MAX ? MPI_MAX : op == R1V_MPI_MIN ? MPI_MIN : MPI_SUM; }

int too_large(char* err, size_t err_size, const char* what, int64_t count) {
  std::snprintf(err, err_size, "%s: %lld elements per process is more than this backend moves in one call (2^31 - 1)",
                what, static_cast<long long>(count));
  return R1V_MPI_FAILED;
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && !g_timed_out) MPI_Finalize();
}

int init(int* rank, int* size, int* local_rank, int* local_size, char* err, size_t err_size) {
  if (g_comm == MPI_COMM_NULL) {
    int provided = 0;
    int code = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    if (code != MPI_SUCCESS) return report(err, err_size, R1V_MPI_FAILED, "MPI_Init_thread", code);
    std::atexit(finalize_at_exit);
    if (provided < MPI_THREAD_SERIALIZED) {
      std::snprintf(err, err_size,
                    "MPI_Init_thread provided thread level %d; the collectives need MPI_THREAD_SERIALIZED or better",
                    provided);
      return R1V_MPI_FAILED;
    }
    MPI_Comm comm = MPI_COMM_NULL, local = MPI_COMM_NULL;
    if ((code = MPI_Comm_dup(MPI_COMM_WORLD, &comm)) != MPI_SUCCESS)
      return report(err, err_size, R1V_MPI_FAILED, "MPI_Comm_dup", code);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &g_rank);
    MPI_Comm_size(comm, &g_size);
    if ((code = MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local)) != MPI_SUCCESS)
      return report(err, err_size, R1V_MPI_FAILED, "MPI_Comm_split_type", code);
    MPI_Comm_rank(local, &g_local_rank);
    MPI_Comm_size(local, &g_local_size);
    MPI_Comm_free(&local);
    g_comm = comm;
  }
  *rank = g_rank;
  *size = g_size;
  *local_rank = g_local_rank;
  *local_size = g_local_size;
  return R1V_MPI_OK;
}

int all_reduce(void* buf, int64_t count, int type, int op, int64_t deadline_ns, char* err, size_t err_size) {
  auto* bytes = static_cast<char*>(buf);
  for (int64_t done = 0; done < count; done += kChunk) {
    int n = static_cast<int>(std::min(kChunk, count - done));
    char* at = bytes + done * static_cast<int64_t>(type_size(type));
    int status = run([&](MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, at, n, mpi_type(type), mpi_op(op), g_comm, r); },
                     deadline_ns, "MPI_Iallreduce", err, err_size);
    if (status != R1V_MPI_OK) return status;
  }
  return R1V_MPI_OK;
}

int broadcast(void* buf, int64_t count, int type, int root, int64_t deadline_ns, char* err, size_t err_size) {
  auto* bytes = static_cast<char*>(buf);
  for (int64_t done = 0; done < count; done += kChunk) {
    int n = static_cast<int>(std::min(kChunk, count - done));
    char* at = bytes + done * static_cast<int64_t>(type_size(type));
    int status = run([&](MPI_Request* r) { return MPI_Ibcast(at, n, mpi_type(type), root, g_comm, r); }, deadline_ns,
                     "MPI_Ibcast", err, err_size);
    if (status != R1V_MPI_OK) return status;
  }
  return R1V_MPI_OK;
}

int all_gather(const void* send, void* recv, int64_t count, int type, int64_t deadline_ns, char* err, size_t err_size) {
  if (count > INT_MAX) return too_large(err, err_size, "MPI_Iallgather", count);
  int n = static_cast<int>(count);
  return run([&](MPI_Request* r) { return MPI_Iallgather(send, n, mpi_type(type), recv, n, mpi_type(type), g_comm, r); },
             deadline_ns, "MPI_Iallgather", err, err_size);
}

int reduce_scatter(const void* send, void* recv, int64_t count, int type, int op, int64_t deadline_ns, char* err,
                   size_t err_size) {
  if (count > INT_MAX) return too_large(err, err_size, "MPI_Ireduce_scatter_block", count);
  int n = static_cast<int>(count);
  return run(
      [&](MPI_Request* r) { return MPI_Ireduce_scatter_block(send, recv, n, mpi_type(type), mpi_op(op), g_comm, r); },
      deadline_ns, "MPI_Ireduce_scatter_block", err, err_size);
}

int all_gather_bytes(const void* send, void* recv, const int64_t* counts, int64_t deadline_ns, char* err,
                     size_t err_size) {
  std::vector<int> lengths(g_size), offsets(g_size);
  int64_t total = 0;
  for (int r = 0; r < g_size; ++r) {
    offsets[r] = static_cast<int>(total);
    lengths[r] = static_cast<int>(counts[r]);
    total += counts[r];
    if (total > INT_MAX) return too_large(err, err_size, "MPI_Iallgatherv", total);
  }
  return run(
      [&](MPI_Request* r) {
        return MPI_Iallgatherv(send, lengths[g_rank], MPI_BYTE, recv, lengths.data(), offsets.data(), MPI_BYTE, g_comm, r);
      },
      deadline_ns, "MPI_Iallgatherv", err, err_size);
}

int barrier(int64_t deadline_ns, char* err, size_t err_size) {
  return run([&](MPI_Request* r) { return MPI_Ibarrier(g_comm, r); }, deadline_ns, "MPI_Ibarrier", err, err_size);
}

void abort_job(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

const R1vMpiApi kApi = {kR1vMpiAbiVersion, init,     all_reduce, broadcast, all_gather,
                        reduce_scatter,    all_gather_bytes, barrier,   abort_job};

}  // namespace

extern "C" __attribute__((visibility("default"))) const R1vMpiApi* r1v_mpi_api(void) { return &kApi; }

// The C interface of libr1v_mpi.so, the MPI backend of the collectives. It is a library of its
// own so that the addon has no link-time dependency on libmpi: a plain `import 'r1v'` never
// loads MPI. mpi_library.cpp dlopens it (RTLD_NOW | RTLD_GLOBAL: Open MPI's plugins resolve
// libmpi's symbols globally) on the first collective of a process started by mpirun.
//
// Conventions: every call but abort/finalize blocks until done or until `deadline_ns`
// (std::chrono::steady_clock nanoseconds, i.e. CLOCK_MONOTONIC) and returns an R1vMpiStatus;
// on failure it writes a NUL-terminated message into err[0..err_size). Calls are made by one
// thread at a time (the caller serialises them; MPI_THREAD_SERIALIZED is required). All
// collectives run on one duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN, non-blocking
// (MPI_I*) and polled with MPI_Test, so a stalled peer ends in R1V_MPI_TIMEOUT instead of a
// hang. After a timeout the request is still outstanding: the buffers it names must stay
// allocated, and finalize() skips MPI_Finalize (it would wait for the stalled peer).
#pragma once
#include <cstddef>
#include <cstdint>

extern "C" {

enum R1vMpiStatus { R1V_MPI_OK = 0, R1V_MPI_TIMEOUT = 1, R1V_MPI_FAILED = 2 };
enum R1vMpiType { R1V_MPI_F32 = 0, R1V_MPI_I32 = 1, R1V_MPI_F64 = 2, R1V_MPI_I64 = 3, R1V_MPI_BYTE = 4 };
enum R1vMpiOp { R1V_MPI_SUM = 0, R1V_MPI_MAX = 1, R1V_MPI_MIN = 2 };

struct R1vMpiApi {
  int abi_version;  // kR1vMpiAbiVersion
  // MPI_Init_thread (once; later calls return the same answers). The world rank and size, and
  // the rank and size within this host (MPI_COMM_TYPE_SHARED).
  int (*init)(int* rank, int* size, int* local_rank, int* local_size, char* err, size_t err_size);
  // In place; any count (split into chunks of at most 2^30 elements).
  int (*all_reduce)(void* buf, int64_t count, int type, int op, int64_t deadline_ns, char* err, size_t err_size);
  int (*broadcast)(void* buf, int64_t count, int type, int root, int64_t deadline_ns, char* err, size_t err_size);
  // recv holds size·count elements, rank r's at [r·count, (r+1)·count). count < 2^31.
  int (*all_gather)(const void* send, void* recv, int64_t count, int type, int64_t deadline_ns, char* err,
                    size_t err_size);
  // send holds size·count elements; recv gets the reduction of block `rank`. count < 2^31.
  int (*reduce_scatter)(const void* send, void* recv, int64_t count, int type, int op, int64_t deadline_ns,
                        char* err, size_t err_size);
  // Bytes of any length per rank: counts[r] is rank r's length (all agreed beforehand), recv
  // holds their sum, rank r's bytes at the sum of counts[0..r). The total is < 2^31.
  int (*all_gather_bytes)(const void* send, void* recv, const int64_t* counts, int64_t deadline_ns, char* err,
                          size_t err_size);
  int (*barrier)(int64_t deadline_ns, char* err, size_t err_size);
  // MPI_Abort(MPI_COMM_WORLD, code): ends every process of the job.
  void (*abort)(int code);
};

const R1vMpiApi* r1v_mpi_api(void);

}  // extern "C"

inline constexpr int kR1vMpiAbiVersion = 1;

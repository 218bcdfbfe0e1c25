// NCCL through dlopen: declarations of the documented C API entry points used (NCCL 2.x ABI),
// one communicator per device, launch and polled wait. See nccl.h.
#include "nccl.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "../core/error.h"
#include "mpi_api.h"

namespace r1v::nccl {

namespace {

// From NCCL's public API documentation (values of ncclResult_t, ncclRedOp_t, ncclDataType_t).
using ncclComm_t = struct ncclComm*;
struct ncclUniqueId {
  char internal[128];  // NCCL_UNIQUE_ID_BYTES
};
using ncclResult_t = int;
constexpr ncclResult_t ncclSuccess = 0;
constexpr ncclResult_t ncclInProgress = 7;
enum ncclRedOp_t { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3 };
enum ncclDataType_t { ncclInt32 = 2, ncclFloat16 = 6, ncclFloat32 = 7, ncclBfloat16 = 9 };

struct Library {
  ncclResult_t (*get_unique_id)(ncclUniqueId*);
  ncclResult_t (*comm_init_rank)(ncclComm_t*, int, ncclUniqueId, int);
  ncclResult_t (*all_reduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*all_gather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*reduce_scatter)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*get_async_error)(ncclComm_t, ncclResult_t*);
  ncclResult_t (*comm_abort)(ncclComm_t);
  const char* (*error_string)(ncclResult_t);
};

template <typename F>
void load(void* handle, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(handle, name));
  if (!fn) fail(ErrorCode::Distributed, "libnccl.so.2 lacks ", name, "; install NCCL 2.12 or newer");
}

const Library& library() {
  static std::mutex mutex;
  static Library* lib = nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (lib) return *lib;
  void* handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    fail(ErrorCode::Distributed, "collectives on CUDA tensors need NCCL: libnccl.so.2 could not be loaded (",
         dlerror(), "). Install NCCL 2 (e.g. apt-get install libnccl2) or put it on LD_LIBRARY_PATH");
  auto* l = new Library();
  load(handle, "ncclGetUniqueId", l->get_unique_id);
  load(handle, "ncclCommInitRank", l->comm_init_rank);
  load(handle, "ncclAllReduce", l->all_reduce);
  load(handle, "ncclBroadcast", l->broadcast);
  load(handle, "ncclAllGather", l->all_gather);
  load(handle, "ncclReduceScatter", l->reduce_scatter);
  load(handle, "ncclCommGetAsyncError", l->get_async_error);
  load(handle, "ncclCommAbort", l->comm_abort);
  load(handle, "ncclGetErrorString", l->error_string);
  lib = l;
  return *lib;
}

// Communicators by device; an aborted one stays null (the collectives are broken by then).
std::mutex comms_mutex;
std::map<int, ncclComm_t> comms;

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32:
      return ncclFloat32;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    case DType::I32:
      return ncclInt32;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::Max ? ncclMax : op == ReduceOp::Min ? ncclMin : ncclSum; }

ncclComm_t comm_for(const Library& lib, const Group& group) {
  std::lock_guard<std::mutex> lock(comms_mutex);
  auto found = comms.find(group.device);
  if (found != comms.end()) {
    if (!found->second) fail(ErrorCode::Distributed, "the NCCL communicator of cuda:", group.device, " was aborted");
    return found->second;
  }
  ncclUniqueId id{};
  if (group.rank == 0) {
    ncclResult_t r = lib.get_unique_id(&id);
    if (r != ncclSuccess) fail(ErrorCode::Distributed, "ncclGetUniqueId failed: ", lib.error_string(r));
  }
  group.share_from_rank0(&id, sizeof id);
  ncclComm_t comm = nullptr;
  ncclResult_t r = lib.comm_init_rank(&comm, group.size, id, group.rank);
  if (r != ncclSuccess) fail(ErrorCode::Distributed, "ncclCommInitRank failed: ", lib.error_string(r));
  comms[group.device] = comm;
  return comm;
}

ncclResult_t launch_on(const Library& lib, ncclComm_t comm, const Launch& l, cudaStream_t stream) {
  switch (l.kind) {
    case Kind::AllReduce:
      return lib.all_reduce(l.send, l.recv, l.count, nccl_type(l.dtype), nccl_op(l.op), comm, stream);
    case Kind::Broadcast:
      return lib.broadcast(l.send, l.recv, l.count, nccl_type(l.dtype), l.root, comm, stream);
    case Kind::AllGather:
      return lib.all_gather(l.send, l.recv, l.count, nccl_type(l.dtype), comm, stream);
    case Kind::ReduceScatter:
      return lib.reduce_scatter(l.send, l.recv, l.count, nccl_type(l.dtype), nccl_op(l.op), comm, stream);
  }
  return ncclSuccess;
}

int abort_with(const Library& lib, int device, ncclComm_t comm, int status, std::string* error, std::string message) {
  lib.comm_abort(comm);
  std::lock_guard<std::mutex> lock(comms_mutex);
  comms[device] = nullptr;
  *error = std::move(message);
  return status;
}

}  // namespace

int run(const Group& group, const Launch& launch, void* cuda_stream, int64_t deadline_ns, std::string* error) {
  const Library& lib = library();
  ncclComm_t comm = comm_for(lib, group);
  auto stream = static_cast<cudaStream_t>(cuda_stream);
  ncclResult_t r = launch_on(lib, comm, launch, stream);
  if (r != ncclSuccess && r != ncclInProgress)
    return abort_with(lib, group.device, comm, R1V_MPI_FAILED, error, concat("NCCL launch: ", lib.error_string(r)));
  for (int polls = 0;; ++polls) {
    cudaError_t done = cudaStreamQuery(stream);
    if (done == cudaSuccess) return R1V_MPI_OK;
    if (done != cudaErrorNotReady)
      return abort_with(lib, group.device, comm, R1V_MPI_FAILED, error,
                        concat("CUDA error while waiting: ", cudaGetErrorString(done)));
    ncclResult_t async = ncclSuccess;
    lib.get_async_error(comm, &async);
    if (async != ncclSuccess && async != ncclInProgress)
      return abort_with(lib, group.device, comm, R1V_MPI_FAILED, error, concat("NCCL: ", lib.error_string(async)));
    auto now = std::chrono::steady_clock::now().time_since_epoch();
    if (std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() > deadline_ns)
      return abort_with(lib, group.device, comm, R1V_MPI_TIMEOUT, error,
                        "the NCCL operation did not complete before its deadline (ncclCommAbort called)");
    if (polls > 256) std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, 4 * (polls - 256))));
  }
}

}  // namespace r1v::nccl

// The NCCL backend of the collectives (CUDA tensors). libnccl.so.2 is loaded with dlopen on the
// first CUDA collective; the few entry points and enum values used are declared in nccl.cpp
// from NCCL's documented C API (the build needs no NCCL headers). One NCCL communicator per CUDA
// device, made lazily inside the first collective on that device: rank 0 makes the unique id,
// which the MPI backend broadcasts. Binding each process to its GPU (cuda:<localRank>) is the
// caller's choice of engine device. Compiled only with the CUDA backend (R1V_WITH_CUDA).
//
// run() launches on the engine's cudaStream_t and waits for completion polling cudaStreamQuery
// and ncclCommGetAsyncError until the deadline (the GPU work queued before it on that stream is
// waited for too); on an error or the deadline it calls ncclCommAbort and reports.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "../core/dtype.h"
#include "communicator.h"

namespace r1v::nccl {

enum class Kind { AllReduce, Broadcast, AllGather, ReduceScatter };

struct Launch {
  Kind kind;
  const void* send;
  void* recv;
  size_t count;  // elements per rank: of send (all-reduce, broadcast, all-gather) or of recv (reduce-scatter)
  DType dtype;
  ReduceOp op = ReduceOp::Sum;
  int root = 0;
};

struct Group {
  int device;  // the CUDA device index (the calling stream thread has it current)
  int rank;
  int size;
  // Broadcasts `bytes` bytes at data from rank 0 to every rank (the MPI backend); throws on failure.
  std::function<void(void* data, size_t bytes)> share_from_rank0;
};

// R1V_MPI_OK, R1V_MPI_TIMEOUT or R1V_MPI_FAILED (mpi_api.h's codes), with a message in *error.
int run(const Group& group, const Launch& launch, void* cuda_stream, int64_t deadline_ns, std::string* error);

}  // namespace r1v::nccl

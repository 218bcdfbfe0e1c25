// cuBLASLt, loaded at run time (dlopen) so that neither its headers nor the library are
// needed to build: the few prototypes and enum values used are declared here, following
// NVIDIA's cuBLAS documentation (cublasLt.h, cublas_api.h, library_types.h). Tried in
// order: libcublasLt.so.13, .so.12, .so; R1V_CUBLASLT=0 disables it. Opaque cuBLASLt
// handles and descriptors are void* here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace r1v::cublaslt {

using Status = int32_t;  // cublasStatus_t
constexpr Status kSuccess = 0;

// cudaDataType_t
constexpr int32_t kDataR32F = 0, kDataR16F = 2, kDataR16BF = 14;
// cublasComputeType_t: CUBLAS_COMPUTE_32F is plain FP32 math (no TF32 down-conversion).
constexpr int32_t kCompute32F = 68;
// cublasOperation_t
constexpr int32_t kOpN = 0, kOpT = 1;
// cublasLtMatmulDescAttributes_t
constexpr int32_t kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
// cublasLtEpilogue_t (a uint32_t attribute)
constexpr uint32_t kEpilogueDefault = 1, kEpilogueBias = 4;
// cublasLtMatrixLayoutAttribute_t: BATCH_COUNT is int32_t, STRIDED_BATCH_OFFSET int64_t.
constexpr int32_t kLayoutBatchCount = 5, kLayoutStridedBatchOffset = 6;
// cublasLtMatmulPreferenceAttributes_t: MAX_WORKSPACE_BYTES is uint64_t, the minimum
// alignments (bytes; default 256) uint32_t.
constexpr int32_t kPrefMaxWorkspaceBytes = 1, kPrefMinAlignmentA = 5, kPrefMinAlignmentB = 6,
                  kPrefMinAlignmentC = 7, kPrefMinAlignmentD = 8;

struct MatmulAlgo {  // cublasLtMatmulAlgo_t
  uint64_t data[8];
};

struct HeuristicResult {  // cublasLtMatmulHeuristicResult_t
  MatmulAlgo algo;
  size_t workspace_size;
  Status state;
  float waves_count;
  int32_t reserved[4];
};

struct Library {
  std::string path;  // what was loaded
  Status (*create)(void** handle);
  Status (*desc_create)(void** desc, int32_t compute_type, int32_t scale_type);
  Status (*desc_destroy)(void* desc);
  Status (*desc_set_attribute)(void* desc, int32_t attr, const void* buf, size_t size);
  Status (*layout_create)(void** layout, int32_t type, uint64_t rows, uint64_t cols, int64_t ld);
  Status (*layout_destroy)(void* layout);
  Status (*layout_set_attribute)(void* layout, int32_t attr, const void* buf, size_t size);
  Status (*preference_create)(void** pref);
  Status (*preference_destroy)(void* pref);
  Status (*preference_set_attribute)(void* pref, int32_t attr, const void* buf, size_t size);
  Status (*algo_get_heuristic)(void* handle, void* desc, void* a_layout, void* b_layout, void* c_layout,
                               void* d_layout, void* pref, int requested, HeuristicResult* results, int* returned);
  // D = alpha·op(A)·op(B) + beta·C (column-major), on a cudaStream_t.
  Status (*matmul)(void* handle, void* desc, const void* alpha, const void* a, void* a_layout, const void* b,
                   void* b_layout, const void* beta, const void* c, void* c_layout, void* d, void* d_layout,
                   const MatmulAlgo* algo, void* workspace, size_t workspace_size, void* stream);
};

// The loaded library, or nullptr (a build without CUDA, R1V_CUBLASLT=0, or none found).
// Loaded once; thread-safe.
const Library* library();

}  // namespace r1v::cublaslt

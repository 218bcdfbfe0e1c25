// embedding: token ids i32 [T] → rows of table [V, H], out [T, H]. embeddingBackward scatters
// dY [T, H] back: dTable[v] = Σ_{t: ids[t] = v} dY[t] (zero for ids never seen).
// An id outside [0, V) is found when the work runs: on the CPU the work throws
// Error(Argument) naming the first bad index (the outputs then reject on readback); on CUDA
// the kernel sets kDeviceErrorIdOutOfRange, writes NaN in the bad token's output row (forward)
// and adds nothing for it (backward); the next readback raises the error.
// Determinism: the CPU backward adds each column's contributions in token order; the CUDA
// backward adds with f32 atomics, so its sums may differ in the last bits from run to run.
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

// Validate (ids i32 [T], table [V, H] / dY [T, H], vocab ≥ 1), allocate and enqueue.
Tensor embedding(const Tensor& ids, const Tensor& table);
Tensor embedding_backward(const Tensor& ids, const Tensor& dy, int64_t vocab);

namespace cpu {
// Both throw Error(Argument) for the first id outside [0, vocab), before writing anything.
void embedding(const int32_t* ids, int64_t tokens, const float* table, int64_t vocab, int64_t hidden, float* out);
void embedding_backward(const int32_t* ids, int64_t tokens, const float* dy, int64_t vocab, int64_t hidden,
                        float* d_table);
}  // namespace cpu
namespace cuda {
void embedding(DType dtype, const int32_t* ids, int64_t tokens, const void* table, int64_t vocab, int64_t hidden,
               void* out, int* error_word, void* stream);
// f32_sum: a zeroed f32 [vocab, hidden] buffer to add into (d_table itself when dtype is f32),
// converted into d_table afterwards otherwise.
void embedding_backward(DType dtype, const int32_t* ids, int64_t tokens, const void* dy, int64_t vocab,
                        int64_t hidden, float* f32_sum, void* d_table, int* error_word, void* stream);
}  // namespace cuda

}  // namespace r1v

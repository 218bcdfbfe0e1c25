// embedding: token ids i32 [T] → rows of table [V, H], out [T, H]. embeddingBackward scatters
// dY [T, H] back: dTable[v] = Σ_{t: ids[t] = v} dY[t] (zero for ids never seen).
// They are the row gather and its scatter-add (ops/gather_rows.h) with ids as the index, and
// run those kernels. An id outside [0, V) is found when the work runs: on the CPU the work
// throws Error(Argument) naming the first bad index (the outputs then reject on readback); on
// CUDA the kernel sets kDeviceErrorRowIndexOutOfRange, writes NaN in the bad token's output row
// (forward) and adds nothing for it (backward); the next readback raises the error.
// Determinism: the CPU backward adds each column's contributions in token order; the CUDA
// backward adds with f32 atomics, so its sums may differ in the last bits from run to run.
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

// Validate (ids i32 [T], table [V, H] / dY [T, H], vocab ≥ 1), allocate and enqueue.
Tensor embedding(const Tensor& ids, const Tensor& table);
Tensor embedding_backward(const Tensor& ids, const Tensor& dy, int64_t vocab);

}  // namespace r1v

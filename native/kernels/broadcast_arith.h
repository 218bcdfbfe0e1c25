// The kernels of the broadcast arithmetic ops (ops/broadcast_arith.h: add, scale,
// scaleChannels(+Backward), sumRows). CPU: f32; CUDA: f32/bf16/f16 with f32 math. Column sums
// are deterministic: the CPU adds the rows in order in f64 per column; CUDA adds f32 partials
// per row chunk, then the chunks in order (no atomics).
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

enum class BroadcastOp { Add, Mul };

namespace cpu {
// out[i] = a[i] (+ or ·) b[i mod nb] for i < n (n a multiple of nb).
void broadcast_binary(BroadcastOp op, const float* a, int64_t n, const float* b, int64_t nb, float* out);
void scale(const float* x, int64_t n, float alpha, float* out);
// out[c] = Σ_r x[r, c]·(w ? w[r, c] : 1), rows added in order in f64.
void column_sums(const float* x, const float* w, int64_t rows, int64_t cols, float* out);
}  // namespace cpu
namespace cuda {
void broadcast_binary(BroadcastOp op, DType dtype, const void* a, int64_t n, const void* b, int64_t nb, void* out,
                      void* stream);
void scale(DType dtype, const void* x, int64_t n, float alpha, void* out, void* stream);
// Row chunks of the column sums: `partials` must hold column_sum_chunks(rows)·cols floats.
int64_t column_sum_chunks(int64_t rows);
void column_sums(DType dtype, const void* x, const void* w, int64_t rows, int64_t cols, float* partials, void* out,
                 void* stream);
}  // namespace cuda

}  // namespace r1v

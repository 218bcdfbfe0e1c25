// The row kernels (ops: gatherRows, scatterAddRows, scatterRows, writeRows in
// ops/gather_rows.h; embedding and embeddingBackward in ops/embedding.h). Rows are the first
// dim of a tensor, the rest flattened; idx holds M i32 row indices.
// Bad indices: the CPU functions throw Error(Argument) naming `op` and the index array before
// writing anything; the CUDA kernels set kDeviceErrorRowIndexOutOfRange /
// kDeviceErrorDuplicateRowIndex in error_word (core/device_error.h) and go on: a bad gather
// row is NaN, a bad scatter-add row is skipped, overwrites skip out-of-range rows and write NaN
// in repeated destination rows.
// Copies move f32/bf16/f16 bytes on both backends; scatter_add_rows adds in f32 (CPU: f32 only).
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

namespace cpu {
// Rows of row_bytes bytes; each throws Error(Argument) naming `op` and the index array (`index`,
// e.g. "idx", or "ids" for embedding) before writing anything.
void gather_rows(const char* op, const char* index, const int32_t* idx, int64_t m, const void* x, int64_t n,
                 int64_t row_bytes, void* out);
void scatter_add_rows(const char* op, const char* index, const int32_t* idx, int64_t m, const float* src,
                      int64_t rows, int64_t cols, float* out);
// seen: scratch of n bytes for the repeat check.
void write_rows(const char* op, const int32_t* idx, int64_t m, const void* src, int64_t n, int64_t row_bytes,
                void* dst, uint8_t* seen);
}  // namespace cpu
namespace cuda {
void gather_rows(DType dtype, const int32_t* idx, int64_t m, const void* x, int64_t n, int64_t cols, void* out,
                 int* error_word, void* stream);
// f32_sum: a zeroed f32 [rows, cols] buffer to add into (out itself when dtype is f32),
// converted into out afterwards otherwise.
void scatter_add_rows(DType dtype, const int32_t* idx, int64_t m, const void* src, int64_t rows, int64_t cols,
                      float* f32_sum, void* out, int* error_word, void* stream);
// owner: i32 scratch [n] (which m claims each destination row).
void write_rows(DType dtype, const int32_t* idx, int64_t m, const void* src, int64_t n, int64_t cols, void* dst,
                int32_t* owner, int* error_word, void* stream);
}  // namespace cuda

}  // namespace r1v

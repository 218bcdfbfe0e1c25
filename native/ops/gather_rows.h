// Row gathers and scatters over the first dim (the rest flattened), with i32 indices idx [M]:
//   gatherRows(x [N, ...], idx)            out[m] = x[idx[m]]                → [M, ...]
//   scatterAddRows(src [M, ...], idx, R)   out = 0, out[idx[m]] += src[m]    → [R, ...] (gatherRows' backward)
//   scatterRows(base [N, ...], idx, src)   a copy of base with out[idx[m]] = src[m]
//   writeRows(dst [N, ...], idx, src)      dst[idx[m]] = src[m], in place, in stream order
// Indices are data, checked when the work runs. On the CPU the work throws Error(Argument)
// naming the first bad entry (idx[m] = v outside [0, N), or a repeated index for the two
// overwriting ops, whose result would depend on order) before writing anything; the outputs
// (for writeRows, dst itself) then carry that error. On CUDA the kernels set a device error
// code (kDeviceErrorRowIndexOutOfRange / kDeviceErrorDuplicateRowIndex) raised at the next
// readback: gatherRows writes NaN in the bad row, scatterAddRows skips it, the overwriting ops
// skip out-of-range rows and write NaN in repeated destination rows.
// Dtypes: the copies (gather, scatter, write) move f32/bf16/f16 on both devices; scatterAddRows
// adds in f32 (CPU: f32 only). Determinism: the CPU scatterAddRows adds in m order per column
// (threads own column blocks); CUDA adds with f32 atomics (last-bit differences between runs).
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

Tensor gather_rows(const Tensor& x, const Tensor& idx);
Tensor scatter_add_rows(const Tensor& src, const Tensor& idx, int64_t rows);
Tensor scatter_rows(const Tensor& base, const Tensor& idx, const Tensor& src);
// In place: dst's memory (and every view of it) is written in stream order.
void write_rows(const Tensor& dst, const Tensor& idx, const Tensor& src);

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

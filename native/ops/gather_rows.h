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

}  // namespace r1v

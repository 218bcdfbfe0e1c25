// Argument checks shared by the ops. Each throws r1v::Error whose message starts with the
// op's name and names the argument, e.g. "attention: k has dtype bf16 but q is f32".
#pragma once
#include <initializer_list>
#include <utility>

#include "../core/tensor.h"

namespace r1v {

// Alive (not disposed, engine not disposed).
inline void check_live(const char* op, const Tensor& t, const char* name) {
  if (!t.defined()) fail(ErrorCode::Argument, op, ": ", name, " is missing");
  t.check_alive(concat(op, ": ", name).c_str());
}

// Same engine as `ref`.
inline void check_same_engine(const char* op, const Tensor& t, const char* name, const Tensor& ref,
                              const char* ref_name) {
  if (t.context() != ref.context())
    fail(ErrorCode::Device, op, ": ", name, " (", t.device().id(), ") and ", ref_name, " (", ref.device().id(),
         ") belong to different engines");
}

inline void check_dtype(const char* op, const Tensor& t, const char* name, DType dtype) {
  if (t.dtype() != dtype)
    fail(ErrorCode::DType, op, ": ", name, " must be ", dtype_name(dtype), ", got ", dtype_name(t.dtype()));
}

inline void check_same_dtype(const char* op, const Tensor& t, const char* name, const Tensor& ref,
                             const char* ref_name) {
  if (t.dtype() != ref.dtype())
    fail(ErrorCode::DType, op, ": ", name, " has dtype ", dtype_name(t.dtype()), " but ", ref_name, " is ",
         dtype_name(ref.dtype()));
}

// A float dtype the device computes in: f32 on the CPU; f32, bf16, f16 on CUDA.
inline void check_compute_dtype(const char* op, const Tensor& t, const char* name) {
  if (!is_floating(t.dtype()))
    fail(ErrorCode::DType, op, ": ", name, " must be a float tensor, got ", dtype_name(t.dtype()));
  if (t.device().is_cpu() && t.dtype() != DType::F32)
    fail(ErrorCode::DType, op, ": ", name, " is ", dtype_name(t.dtype()), "; the CPU computes in f32 only");
}

inline void check_ndim(const char* op, const Tensor& t, const char* name, int ndim, const char* layout) {
  if (t.ndim() != ndim)
    fail(ErrorCode::Shape, op, ": ", name, " must be ", ndim, "-D ", layout, ", got shape ", shape_str(t.shape()));
}

inline void check_shape(const char* op, const Tensor& t, const char* name, const Shape& expected) {
  if (t.shape() != expected)
    fail(ErrorCode::Shape, op, ": ", name, " must have shape ", shape_str(expected), ", got ", shape_str(t.shape()));
}

}  // namespace r1v

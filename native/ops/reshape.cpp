#include "reshape.h"

#include "op_checks.h"

namespace r1v {

Tensor reshape(const Tensor& x, const std::vector<int64_t>& shape) {
  const char* op = "reshape";
  check_live(op, x, "x");
  int inferred = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (inferred >= 0) fail(ErrorCode::Shape, op, ": shape ", shape_str(shape), " has more than one -1");
      inferred = static_cast<int>(i);
    } else if (shape[i] < 0) {
      fail(ErrorCode::Shape, op, ": shape ", shape_str(shape), " has a negative entry at index ", i);
    }
  }
  Shape out = shape;
  if (inferred >= 0) {
    out[inferred] = 1;
    const int64_t known = shape_numel(out);
    if (known == 0 || x.numel() % known != 0)
      fail(ErrorCode::Shape, op, ": cannot infer the -1 in ", shape_str(shape), " for x of shape ",
           shape_str(x.shape()), " (", x.numel(), " elements)");
    out[inferred] = x.numel() / known;
  }
  const int64_t numel = shape_numel(out);
  if (numel != x.numel())
    fail(ErrorCode::Shape, op, ": shape ", shape_str(shape), " has ", numel, " elements but x ", shape_str(x.shape()),
         " has ", x.numel());
  return x.reshaped(out);
}

}  // namespace r1v

// The row normalisation kernels (ops: rmsNorm, layerNorm and their backward in ops/norms.h)
// over rows × cols, normalising each row:
//   forward:  y = (x − mean)·rstd·weight (+ bias), statistics f32 [rows] kept for backward
//   backward: x̂ = (x − mean)·rstd, g = dY·weight, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)),
//             dWeight = Σ_rows dY·x̂, dBias = Σ_rows dY
// mean == nullptr selects RMSNorm (no centring and no mean(g) term; bias and d_bias unused).
// CPU: f32; CUDA: f32/bf16/f16 with f32 math; same contracts on both.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

struct NormShape {
  DType dtype = DType::F32;  // of x, weight, bias, y, dY, dx and the parameter gradients
  int64_t rows = 0, cols = 0;
  float eps = 1e-6f;
};

// Parameter gradients are deterministic: each block of kNormRowsPerPartial rows writes its
// partial column sums to a workspace, then the partials are added in block order, so the
// result depends neither on the thread count nor on scheduling. Workspace size in floats:
constexpr int64_t kNormRowsPerPartial = 64;
inline int64_t norm_partial_blocks(int64_t rows) { return (rows + kNormRowsPerPartial - 1) / kNormRowsPerPartial; }
inline int64_t norm_workspace_floats(const NormShape& s, int sums) {
  return sums * norm_partial_blocks(s.rows) * s.cols;
}

// Backward workspace: norm_workspace_floats(s, mean ? 2 : 1); rows ≥ 1.
namespace cpu {
void norm_forward(const NormShape& s, const void* x, const void* weight, const void* bias, void* y, float* mean,
                  float* rstd);
void norm_backward(const NormShape& s, const void* x, const void* weight, const float* mean, const float* rstd,
                   const void* dy, void* dx, void* d_weight, void* d_bias, float* workspace);
}  // namespace cpu

namespace cuda {
void norm_forward(const NormShape& s, const void* x, const void* weight, const void* bias, void* y, float* mean,
                  float* rstd, void* stream);
void norm_backward(const NormShape& s, const void* x, const void* weight, const float* mean, const float* rstd,
                   const void* dy, void* dx, void* d_weight, void* d_bias, float* workspace, void* stream);
}  // namespace cuda

}  // namespace r1v

// Row normalisations over the last dimension of x [N, D] or [B, S, D] (N = B·S rows):
//   rmsNorm:   y = x·rstd·weight,              rstd = 1/sqrt(mean(x²) + eps)       (Qwen2's RMSNorm)
//   layerNorm: y = (x − mean)·rstd·weight + bias, rstd = 1/sqrt(var(x) + eps)     (torch, biased variance)
// Statistics are f32 of shape x.shape[:-1] whatever the dtype, kept for the backward passes:
//   x̂ = (x − mean)·rstd (mean = 0 for RMSNorm), g = dY·weight,
//   dx = rstd·(g − mean(g) − x̂·mean(g·x̂))   (RMSNorm: without the mean(g) term),
//   dWeight = Σ_rows dY·x̂, dBias = Σ_rows dY.
// Gradients are fresh tensors (overwritten, not accumulated).
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

struct RmsNormResult {
  Tensor y, rstd;
};
struct LayerNormResult {
  Tensor y, mean, rstd;
};
struct RmsNormGradients {
  Tensor dx, d_weight;
};
struct LayerNormGradients {
  Tensor dx, d_weight, d_bias;
};

// Validate (shapes, dtypes, engines, eps > 0 and finite as f32), allocate and enqueue.
RmsNormResult rms_norm(const Tensor& x, const Tensor& weight, double eps);
RmsNormGradients rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& dy);
LayerNormResult layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
LayerNormGradients layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                       const Tensor& dy);

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

// The kernels of both backends, same contracts (CPU: f32; CUDA: f32/bf16/f16, f32 math).
// mean == nullptr selects RMSNorm (no centring, bias and d_bias unused).
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

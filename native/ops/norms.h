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

}  // namespace r1v

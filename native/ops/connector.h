// connector: InternVL's mlp1 projector from ViT patch features to LLM tokens.
//   x [B, h, w, C] (h, w even) → pixel shuffle (downsample 0.5, ps_version v2):
//     s[b, i, j, k·C + c] = x[b, 2i + ⌊k/2⌋, 2j + k mod 2, c], k ∈ 0..3, rows t = (b, i, j) row-major
//   → LayerNorm(4C, eps) → Linear(4C → H) → GELU (erf) → Linear(H → H) → y [B, (h/2)·(w/2), H].
// Weights in PyTorch's Linear layout [out, in]: y = x·Wᵀ + b. The two Linears run through
// run_gemm (bias + GELU in its epilogue); the kernels (kernels/connector.h) do the rest: the
// pixel shuffle is folded into the addressing of the LayerNorm kernels, so s is never materialised.
// Backward recomputes the forward intermediates from x (nothing is saved between calls).
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

struct ConnectorParams {
  Tensor ln_weight;  // [4C]
  Tensor ln_bias;    // [4C]
  Tensor w1;         // [H, 4C]
  Tensor b1;         // [H]
  Tensor w2;         // [H, H]
  Tensor b2;         // [H]
};

struct ConnectorOptions {
  double eps = 1e-5;  // LayerNorm epsilon (InternVL's mlp1 uses nn.LayerNorm's default)
};

struct ConnectorGradients {
  Tensor dx, d_ln_weight, d_ln_bias, d_w1, d_b1, d_w2, d_b2;
};

// Validate (shapes, dtypes, engines, even h and w, eps > 0 and finite), allocate and enqueue.
// Gradients are fresh tensors (overwritten, not accumulated).
Tensor connector_forward(const Tensor& x, const ConnectorParams& p, const ConnectorOptions& options);
ConnectorGradients connector_backward(const Tensor& x, const ConnectorParams& p, const Tensor& dy,
                                      const ConnectorOptions& options);

}  // namespace r1v

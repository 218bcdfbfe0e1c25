// Elementwise arithmetic glue of the model, with broadcasting over leading dims:
//   add(a, b)                 a + b, b of a's shape or of a trailing suffix of it ([T, C] + [C])
//   scale(x, alpha)           alpha·x
//   scaleChannels(x, s)       x ∘ s, s [C] = x's last dim (InternViT layer scale)
//   scaleChannelsBackward     dx = dY ∘ s, dScale[c] = Σ_rows dY·x
//   sumRows(x)                x [..., C] → [C], Σ over the flattened leading dims (bias gradients)
// CPU: f32; CUDA: f32, bf16, f16 with f32 math. Column sums are deterministic on both: the CPU
// adds the rows in order in f64 per column (threads own column blocks, so the result does
// not depend on the thread count); CUDA adds f32 partials per row chunk, then the chunks in
// order (no atomics).
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

Tensor add(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double alpha);
Tensor scale_channels(const Tensor& x, const Tensor& s);
struct ScaleChannelsGradients {
  Tensor dx;
  Tensor d_scale;
};
ScaleChannelsGradients scale_channels_backward(const Tensor& x, const Tensor& s, const Tensor& dy);
Tensor sum_rows(const Tensor& x);

}  // namespace r1v

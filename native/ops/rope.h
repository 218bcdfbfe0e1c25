// rope: rotary position embedding in the Qwen2 / HF "rotate_half" layout. For x [T, H, D]
// (D even), token t at position p = positions[t] and i < D/2:
//   inv_freq_i = theta^(−2i/D), a = p·inv_freq_i,
//   y[t, h, i]       = x[t, h, i]·cos a − x[t, h, i + D/2]·sin a
//   y[t, h, i + D/2] = x[t, h, i + D/2]·cos a + x[t, h, i]·sin a
// The angle is formed and reduced modulo 2π in f64 (an f32 p·inv_freq is off by ~1e-3 rad at
// p = 32k), then cos/sin are taken in f32. ropeBackward is the rotation by −a.
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

struct RopeOptions {
  double theta = 0;  // the frequency base (rope_theta); finite and > 0
};

// Validate (x [T, H, D] with D even, positions i32 [T], theta), allocate and enqueue.
Tensor rope(const Tensor& x, const Tensor& positions, const RopeOptions& options);
Tensor rope_backward(const Tensor& dy, const Tensor& positions, const RopeOptions& options);

}  // namespace r1v

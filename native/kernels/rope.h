// The rope kernels (ops: rope, ropeBackward in ops/rope.h): x [tokens, heads, dim] rotated in
// the HF rotate_half layout by the angles a = positions[t]·theta^(−2i/dim), formed and reduced
// modulo 2π in f64, then cos/sin in f32; sin_sign −1 rotates by −a (the backward).
// CPU: f32; CUDA: f32/bf16/f16 with f32 math.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

struct RopeShape {
  DType dtype = DType::F32;
  int64_t tokens = 0, heads = 0, dim = 0;
  double theta = 0;
  float sin_sign = 1.f;  // +1 rotates by +a (forward), −1 by −a (backward)
};

namespace cpu {
// cos_sin_scratch: f32, dim floats per pool thread.
void rope(const RopeShape& s, const void* x, const int32_t* positions, void* y, float* cos_sin_scratch);
}
namespace cuda {
void rope(const RopeShape& s, const void* x, const int32_t* positions, void* y, void* stream);
}

}  // namespace r1v

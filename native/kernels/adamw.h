// The adamwStep kernels (op: ops/adamw.h): one AdamW update of many parameter groups in place.
// With g = grad · grad_scale (· *grad_scale_tensor when given) and p the f32 weights (master
// when given, else param):
//   p ← p − lr·wd·p;  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²;
//   p ← p − step_size · m / (√v · inv_sqrt_bc2 + eps)
// and, with a master, param ← round(p) to param's dtype. m, v, master are f32.
// CPU: f32 param and grad; CUDA: f32/bf16/f16, one multi-tensor launch.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/dtype.h"

namespace r1v {

// One group as the kernels see it; weight_decay is resolved, master may be null.
struct AdamWTensors {
  DType dtype = DType::F32;  // of param and grad
  void* param = nullptr;
  const void* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  float* master = nullptr;
  int64_t numel = 0;
  float weight_decay = 0.f;
};

// The per-step constants, computed in f64 on the host.
struct AdamWConstants {
  float lr, beta1, beta2, eps;
  float one_minus_beta1, one_minus_beta2;  // from f64: 1 − f32(0.999) is 1.3e-5 off
  float step_size;         // lr / (1 − β1^step)
  float inv_sqrt_bc2;      // 1 / √(1 − β2^step)
  float grad_scale;        // the number; a scale tensor multiplies it in the kernel
  const float* grad_scale_tensor = nullptr;  // f32 [1] or null
};

namespace cpu {
// f32 param and grad.
void adamw_step(const std::vector<AdamWTensors>& groups, const AdamWConstants& c);
}  // namespace cpu

namespace cuda {
// One multi-tensor launch over all groups. args: device scratch of at least
// args_bytes(groups.size()) bytes (the group table is copied there).
int64_t args_bytes(int64_t groups);
void adamw_step(const std::vector<AdamWTensors>& groups, const AdamWConstants& c, void* args, void* stream);
}  // namespace cuda

}  // namespace r1v

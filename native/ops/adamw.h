// adamwStep: one AdamW update (torch.optim.AdamW, decoupled weight decay) of many parameter
// groups at once, IN PLACE: it mutates param, m, v (and master) of every group, in stream
// order — work enqueued before it sees the old values, work enqueued after sees the new.
// With g = grad · s (s the gradient scale: a number, times the f32 [1] scale tensor if given,
// so a clip factor computed on the device needs no host round trip) and p the f32 weights
// (master when given, else param):
//   p ← p − lr·wd·p
//   m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
//   p ← p − lr · (m / (1 − β1^step)) / (√(v / (1 − β2^step)) + eps)
// and, with a master, param ← round(p) to param's dtype. m, v, master are f32; param and
// grad share a dtype (CPU: f32; CUDA: f32, bf16, f16). When an input carries the error of
// the op that made it (say a failed backward), nothing is updated and param, m, v, master
// are marked with that error.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "../core/tensor.h"

namespace r1v {

struct AdamWGroup {
  Tensor param, grad, m, v;
  Tensor master;                      // optional (undefined when absent)
  std::optional<double> weight_decay;  // overrides AdamWOptions::weight_decay
};

struct AdamWOptions {
  double lr = 1e-3;            // finite, ≥ 0
  double beta1 = 0.9;          // in [0, 1)
  double beta2 = 0.999;        // in [0, 1)
  double eps = 1e-8;           // finite, > 0
  double weight_decay = 0.01;  // finite, ≥ 0
  double step = 1;             // the step being taken, an integer ≥ 1 (bias corrections)
  double grad_scale = 1;       // finite, ≥ 0
  Tensor grad_scale_tensor;    // optional f32 [1], multiplies grad_scale
};

// Validate every group and the options, then enqueue the update. Groups may be empty (no-op).
void adamw_step(const std::vector<AdamWGroup>& groups, const AdamWOptions& options);

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

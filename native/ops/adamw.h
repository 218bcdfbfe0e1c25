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

}  // namespace r1v

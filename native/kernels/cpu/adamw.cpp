// CPU adamwStep: f32 weights. The groups are cut into fixed-size chunks that the pool's
// threads share, so a model's many small tensors (norms, biases) do not each cost a
// parallel region; the update of one element is independent of every other.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../../core/thread_pool.h"
#include "../../ops/adamw.h"

namespace r1v::cpu {

namespace {

constexpr int64_t kChunk = 8192;

// The update of n elements of one group; `weights` is master when there is one, else param.
void update(const AdamWTensors& t, int64_t begin, int64_t n, const AdamWConstants& c, float scale) {
  const float* grad = static_cast<const float*>(t.grad) + begin;
  float* m = t.m + begin;
  float* v = t.v + begin;
  float* weights = (t.master ? t.master : static_cast<float*>(t.param)) + begin;
  const float decay = 1.f - c.lr * t.weight_decay;
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i] * scale;
    float mi = c.beta1 * m[i] + c.one_minus_beta1 * g;
    float vi = c.beta2 * v[i] + c.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    weights[i] = weights[i] * decay - c.step_size * mi / (std::sqrt(vi) * c.inv_sqrt_bc2 + c.eps);
  }
  // With a master, param is its copy (both f32 on the CPU).
  if (t.master) std::copy(weights, weights + n, static_cast<float*>(t.param) + begin);
}

}  // namespace

void adamw_step(const std::vector<AdamWTensors>& groups, const AdamWConstants& c) {
  const float scale = c.grad_scale * (c.grad_scale_tensor ? *c.grad_scale_tensor : 1.f);
  struct Chunk {
    int group;
    int64_t begin, n;
  };
  std::vector<Chunk> chunks;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int64_t begin = 0; begin < groups[g].numel; begin += kChunk)
      chunks.push_back({static_cast<int>(g), begin, std::min(kChunk, groups[g].numel - begin)});
  }
  ThreadPool::global().parallel_for(static_cast<int64_t>(chunks.size()), 1, [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k) update(groups[chunks[k].group], chunks[k].begin, chunks[k].n, c, scale);
  });
}

}  // namespace r1v::cpu

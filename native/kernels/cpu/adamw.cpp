// CPU adamwStep: f32 weights. The groups are cut into fixed-size chunks that the pool's
// threads share, so a model's many small tensors (norms, biases) do not each cost a
// parallel region; the update of one element is independent of every other.
#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../../core/cpu_info.h"
#include "../../core/thread_pool.h"
#include "../adamw.h"

namespace r1v::cpu {

namespace {

constexpr int64_t kChunk = 8192;

struct Slice {
  const float* grad;
  float* m;
  float* v;
  float* weights;  // master when there is one, else param
  float decay;     // 1 − lr·wd
};

void update_scalar(const Slice& s, int64_t begin, int64_t end, const AdamWConstants& c, float scale) {
  for (int64_t i = begin; i < end; ++i) {
    float g = s.grad[i] * scale;
    float mi = c.beta1 * s.m[i] + c.one_minus_beta1 * g;
    float vi = c.beta2 * s.v[i] + c.one_minus_beta2 * g * g;
    s.m[i] = mi;
    s.v[i] = vi;
    s.weights[i] = s.weights[i] * s.decay - c.step_size * mi / (std::sqrt(vi) * c.inv_sqrt_bc2 + c.eps);
  }
}

#if defined(__x86_64__)
// The same operations as update_scalar (no FMA contraction), eight lanes at a time: the
// compiler cannot vectorise std::sqrt itself while it must set errno.
__attribute__((target("avx2"))) void update_avx2(const Slice& s, int64_t n, const AdamWConstants& c, float scale) {
  const __m256 vscale = _mm256_set1_ps(scale), b1 = _mm256_set1_ps(c.beta1), b2 = _mm256_set1_ps(c.beta2);
  const __m256 omb1 = _mm256_set1_ps(c.one_minus_beta1), omb2 = _mm256_set1_ps(c.one_minus_beta2);
  const __m256 decay = _mm256_set1_ps(s.decay), step_size = _mm256_set1_ps(c.step_size);
  const __m256 inv_sqrt_bc2 = _mm256_set1_ps(c.inv_sqrt_bc2), eps = _mm256_set1_ps(c.eps);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 g = _mm256_mul_ps(_mm256_loadu_ps(s.grad + i), vscale);
    __m256 m = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(s.m + i)), _mm256_mul_ps(omb1, g));
    __m256 v = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(s.v + i)), _mm256_mul_ps(_mm256_mul_ps(omb2, g), g));
    _mm256_storeu_ps(s.m + i, m);
    _mm256_storeu_ps(s.v + i, v);
    __m256 denom = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(v), inv_sqrt_bc2), eps);
    __m256 w = _mm256_mul_ps(_mm256_loadu_ps(s.weights + i), decay);
    _mm256_storeu_ps(s.weights + i, _mm256_sub_ps(w, _mm256_div_ps(_mm256_mul_ps(step_size, m), denom)));
  }
  update_scalar(s, i, n, c, scale);
}

bool has_avx2() {
  static const bool value = cpu_info().isa == "avx2" || cpu_info().isa == "avx512";
  return value;
}
#endif

// n elements of one group from `begin`.
void update(const AdamWTensors& t, int64_t begin, int64_t n, const AdamWConstants& c, float scale) {
  Slice s{static_cast<const float*>(t.grad) + begin, t.m + begin, t.v + begin,
          (t.master ? t.master : static_cast<float*>(t.param)) + begin, 1.f - c.lr * t.weight_decay};
#if defined(__x86_64__)
  if (has_avx2()) {
    update_avx2(s, n, c, scale);
  } else {
    update_scalar(s, 0, n, c, scale);
  }
#else
  update_scalar(s, 0, n, c, scale);
#endif
  // With a master, param is its copy (both f32 on the CPU).
  if (t.master) std::copy(s.weights, s.weights + n, static_cast<float*>(t.param) + begin);
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

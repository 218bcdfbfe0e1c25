#include <cmath>

#include "../../core/thread_pool.h"
#include "../gelu.h"

namespace r1v::cpu {

namespace {

constexpr int64_t kGrain = 4096;
constexpr float kSqrtHalf = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;

// Φ(z) as ½·erfc(−z/√2): keeps its relative accuracy in the negative tail, where 1 + erf cancels.
inline float normal_cdf(float z) { return 0.5f * std::erfc(-z * kSqrtHalf); }

}  // namespace

void gelu(int64_t n, const float* z, float* y) {
  ThreadPool::global().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = z[i] * normal_cdf(z[i]);
  });
}

void gelu_backward(int64_t n, const float* z, const float* dy, float* dz) {
  ThreadPool::global().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float x = z[i];
      dz[i] = dy[i] * (normal_cdf(x) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x));
    }
  });
}

}  // namespace r1v::cpu

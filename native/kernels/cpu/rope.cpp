#include <cmath>

#include "../../core/thread_pool.h"
#include "../rope.h"
#include "vec_math.h"

namespace r1v::cpu {

namespace {

// One head: the first and second halves rotated by the angles whose cos/sin are given.
R1V_VECTOR_CLONES void rotate_head(const float* x, float* y, const float* cos_a, const float* sin_a, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = x[i], x2 = x[i + half];
    y[i] = x1 * cos_a[i] - x2 * sin_a[i];
    y[i + half] = x2 * cos_a[i] + x1 * sin_a[i];
  }
}

}  // namespace

void rope(const RopeShape& s, const void* x, const int32_t* positions, void* y, float* cos_sin_scratch) {
  const int64_t half = s.dim / 2, row = s.heads * s.dim;
  const auto* xf = static_cast<const float*>(x);
  auto* yf = static_cast<float*>(y);
  const double two_pi = 2.0 * M_PI;
  ThreadPool::global().run([&](int thread, int threads) {
    float* cos_a = cos_sin_scratch + thread * s.dim;
    float* sin_a = cos_a + half;
    const int64_t begin = s.tokens * thread / threads, end = s.tokens * (thread + 1) / threads;
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t i = 0; i < half; ++i) {
        const double angle = positions[t] * std::pow(s.theta, -2.0 * static_cast<double>(i) / static_cast<double>(s.dim));
        const double reduced = angle - two_pi * std::nearbyint(angle / two_pi);
        cos_a[i] = static_cast<float>(std::cos(reduced));
        sin_a[i] = s.sin_sign * static_cast<float>(std::sin(reduced));
      }
      for (int64_t h = 0; h < s.heads; ++h) rotate_head(xf + t * row + h * s.dim, yf + t * row + h * s.dim, cos_a, sin_a, half);
    }
  });
}

}  // namespace r1v::cpu

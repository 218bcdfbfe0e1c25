#include "../../core/thread_pool.h"
#include "../swiglu.h"
#include "vec_math.h"

namespace r1v::cpu {

namespace {

constexpr int64_t kGrain = 4096;

// y[i] = g[i]·u[i]·σ(g[i]) = g[i]·u[i] / (1 + e[i]) with e[i] = exp(−g[i]) already in y.
R1V_VECTOR_CLONES void gate_times_up(const float* __restrict__ g, const float* __restrict__ u, float* __restrict__ y,
                                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] * u[i] / (1.f + y[i]);
}

// With e[i] = exp(−g[i]) already in d_gate: s = σ(g), dUp = dY·g·s, dGate = dY·u·s·(1 + g·(1 − s)).
R1V_VECTOR_CLONES void gate_gradients(const float* __restrict__ g, const float* __restrict__ u,
                                      const float* __restrict__ dy, float* __restrict__ d_gate,
                                      float* __restrict__ d_up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.f / (1.f + d_gate[i]);
    d_up[i] = dy[i] * g[i] * s;
    d_gate[i] = dy[i] * u[i] * s * (1.f + g[i] * (1.f - s));
  }
}

}  // namespace

void swiglu(int64_t n, const float* gate, const float* up, float* y) {
  ThreadPool::global().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    exp_shifted_sum(gate + begin, y + begin, end - begin, -1.f, 0.f);
    gate_times_up(gate + begin, up + begin, y + begin, end - begin);
  });
}

void swiglu_backward(int64_t n, const float* gate, const float* up, const float* dy, float* d_gate, float* d_up) {
  ThreadPool::global().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    exp_shifted_sum(gate + begin, d_gate + begin, end - begin, -1.f, 0.f);
    gate_gradients(gate + begin, up + begin, dy + begin, d_gate + begin, d_up + begin, end - begin);
  });
}

}  // namespace r1v::cpu

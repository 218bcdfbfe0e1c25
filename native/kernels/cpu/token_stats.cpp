// CPU tokenStats: per-row softmax statistics over logits chunks, and the logits gradient.
// Rows are split over the pool's threads; each row pass uses the vectorised helpers of
// vec_math.h (max, exp with shift and sum) plus plain loops the compiler vectorises.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../../core/thread_pool.h"
#include "../token_stats.h"
#include "vec_math.h"

namespace r1v::cpu {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Σ_j y_j·(z_j·inv_t − shift) over the j with y_j > 0 (a masked −inf logit has y_j = 0 and
// must add 0, not 0·−inf). Eight partial sums so that the loop vectorises.
R1V_VECTOR_CLONES float shifted_moment(const float* y, const float* z, int64_t n, float inv_t, float shift) {
  constexpr int kLanes = 8;
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      float w = y[j + l];
      acc[l] += w > 0.f ? w * (z[j + l] * inv_t - shift) : 0.f;
    }
  }
  float total = 0.f;
  for (; j < n; ++j) total += y[j] > 0.f ? y[j] * (z[j] * inv_t - shift) : 0.f;
  for (float a : acc) total += a;
  return total;
}

// dz_j = −p_j·(dl + de·(log p_j + H)), log p_j = z_j·inv_t − lse; p_j = 0 (masked or
// underflowed) contributes nothing, NaN stays NaN.
R1V_VECTOR_CLONES void gradient_row(const float* p, const float* z, float* dz, int64_t n, float inv_t, float lse,
                                    float h, float dl, float de) {
  for (int64_t j = 0; j < n; ++j) {
    float pj = p[j];
    dz[j] = pj == 0.f ? 0.f : -pj * (dl + de * (z[j] * inv_t - lse + h));
  }
}

// Merges one chunk's statistics (cm, cs, ca) into a row's running ones. sum == 0 means no
// column seen yet (or only −inf ones); NaN in either side spreads to the sum.
void merge_stats(float& m, float& s, float& a, float cm, float cs, float ca) {
  if (cs == 0.f) return;
  if (s == 0.f) {
    m = cm;
    s = cs;
    a = ca;
    return;
  }
  float nm = std::max(m, cm);
  float f1 = std::exp(m - nm), f2 = std::exp(cm - nm);
  a = f1 * (a + s * (m - nm)) + f2 * (ca + cs * (cm - nm));
  s = s * f1 + cs * f2;
  m = nm;
}

// fn(first_row, end_row, thread) over contiguous row ranges, one per thread.
template <typename Fn>
void for_row_ranges(int64_t rows, Fn&& fn) {
  ThreadPool::global().run([&](int thread, int threads) {
    int64_t per = (rows + threads - 1) / threads;
    int64_t r0 = std::min(rows, thread * per), r1 = std::min(rows, r0 + per);
    if (r0 < r1) fn(r0, r1, thread);
  });
}

}  // namespace

void token_stats_fold(const LogitsChunk& c, const RowStats& st, float* scratch) {
  const auto* logits = static_cast<const float*>(c.logits);
  const float inv_t = c.inv_temperature;
  for_row_ranges(c.rows, [&](int64_t r0, int64_t r1, int thread) {
    float* y = scratch + static_cast<int64_t>(thread) * c.cols;
    for (int64_t r = r0; r < r1; ++r) {
      const float* z = logits + r * c.cols;
      float zmax = row_max(z, c.cols);
      float cm = zmax * inv_t, cs = 0.f, ca = 0.f;
      if (zmax != -kInf) {
        cs = exp_shifted_sum(z, y, c.cols, inv_t, cm);
        ca = shifted_moment(y, z, c.cols, inv_t, cm);
      }
      int64_t t = c.targets[r] - c.col0;
      bool has_target = t >= 0 && t < c.cols;
      if (c.col0 == 0) {
        st.max[r] = -kInf;
        st.sum[r] = 0.f;
        st.moment[r] = 0.f;
        st.target_logit[r] = kNaN;
      }
      if (has_target) st.target_logit[r] = z[t] * inv_t;
      merge_stats(st.max[r], st.sum[r], st.moment[r], cm, cs, ca);
    }
  });
}

void token_stats_finish(int64_t rows, const RowStats& st, float* logprobs, float* entropy) {
  for (int64_t r = 0; r < rows; ++r) {
    float log_sum = std::log(st.sum[r]);
    logprobs[r] = st.target_logit[r] - (st.max[r] + log_sum);
    entropy[r] = log_sum - st.moment[r] / st.sum[r];
  }
}

void token_stats_gradient(const LogitsChunk& c, const RowStats& st, const float* d_logprobs, const float* d_entropy,
                          float* d_logits, float* scratch) {
  const auto* logits = static_cast<const float*>(c.logits);
  const float inv_t = c.inv_temperature;
  for_row_ranges(c.rows, [&](int64_t r0, int64_t r1, int thread) {
    float* p = scratch + static_cast<int64_t>(thread) * c.cols;
    for (int64_t r = r0; r < r1; ++r) {
      const float* z = logits + r * c.cols;
      float* dz = d_logits + r * c.cols;
      float log_sum = std::log(st.sum[r]);
      float lse = st.max[r] + log_sum, h = log_sum - st.moment[r] / st.sum[r];
      float dl = d_logprobs[r] * inv_t, de = d_entropy[r] * inv_t;
      exp_shifted_sum(z, p, c.cols, inv_t, lse);  // p_j = softmax(u)_j
      gradient_row(p, z, dz, c.cols, inv_t, lse, h, dl, de);
      int64_t t = c.targets[r] - c.col0;
      if (t >= 0 && t < c.cols) dz[t] += dl;
    }
  });
}

}  // namespace r1v::cpu

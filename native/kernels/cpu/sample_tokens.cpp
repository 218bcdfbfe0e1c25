// CPU sampleTokens: rows split over the pool's threads. Per row: w = exp(u − max) into a
// scratch row (banned → 0); without truncation, one walk in id order. With top-k/top-p, a
// histogram of w over buckets of its float bits (monotone in w) finds the bucket where the
// cut falls; only that bucket's tokens are sorted, then cut exactly (ties → lower id), and
// the draw walks the kept ids in the order they were gathered (a fixed order).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../../core/thread_pool.h"
#include "../sample_tokens.h"
#include "vec_math.h"

namespace r1v::cpu {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// Buckets by the float bits of w ∈ (0, 1]: exponent and top 5 mantissa bits (each bucket
// spans a factor ≤ 2^(1/32)); 1.0f = 0x3F800000 lands in the last one.
constexpr int kBucketShift = 18;
constexpr int64_t kBuckets = (0x3F800000 >> kBucketShift) + 1;

uint32_t float_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

bool is_banned(const uint32_t* mask, int64_t j) { return mask && (mask[j >> 5] >> (j & 31)) & 1u; }

// Largest non-banned logit, lowest id on ties; −1 when there is none (all banned or −inf).
int32_t greedy_token(const float* z, int64_t vocab, const uint32_t* mask) {
  int32_t best = -1;
  float best_z = -kInf;
  for (int64_t j = 0; j < vocab; ++j) {
    if (z[j] > best_z && !is_banned(mask, j)) {
      best_z = z[j];
      best = static_cast<int32_t>(j);
    }
  }
  return best;
}

// The first id (in the order of `ids`, or of the whole row when ids is null) whose cumulative
// w reaches target; the last positive one if rounding leaves the target unreached.
int32_t walk(const float* w, const int32_t* ids, int64_t n, double target) {
  double cum = 0.0;
  int32_t last = -1;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t j = ids ? ids[i] : static_cast<int32_t>(i);
    if (!(w[j] > 0.f)) continue;  // banned, underflowed or NaN
    cum += w[j];
    last = j;
    if (cum >= target) return j;
  }
  return last;
}

struct RowScratch {
  float* w;            // [vocab]
  int32_t* ids;        // [vocab]
  int32_t* counts;     // [kBuckets]
  double* masses;      // [kBuckets]
};

// The kept ids after top-k/top-p in s.ids[0, n), in a fixed order; returns n (≥ 1: w has a
// positive entry). Buckets above the cut bucket are kept whole (their count stays below k,
// their mass below topP), so only the cut bucket's tokens need sorting, plus the k tokens
// when top-p follows top-k.
int64_t truncate(const SamplingProblem& p, const RowScratch& s) {
  std::fill(s.counts, s.counts + kBuckets, 0);
  std::fill(s.masses, s.masses + kBuckets, 0.0);
  for (int64_t j = 0; j < p.vocab; ++j) {
    const float wj = s.w[j];
    if (!(wj > 0.f)) continue;
    const uint32_t b = float_bits(wj) >> kBucketShift;
    s.counts[b] += 1;
    s.masses[b] += wj;
  }
  double total = 0.0;
  for (int64_t b = 0; b < kBuckets; ++b) total += s.masses[b];
  // The bucket where the top-k count, or (without top-k) the top-p mass, is first reached
  // walking down from the largest w.
  int64_t cut = 0, count = 0;
  double mass = 0.0;
  for (int64_t b = kBuckets - 1; b >= 0; --b) {
    count += s.counts[b];
    mass += s.masses[b];
    if (p.top_k > 0 ? count >= p.top_k : mass >= p.top_p * total) {
      cut = b;
      break;
    }
  }
  const float* w = s.w;
  auto bucket = [w](int32_t j) { return static_cast<int64_t>(float_bits(w[j]) >> kBucketShift); };
  int64_t n_above = 0;
  for (int32_t j = 0; j < p.vocab; ++j) {
    if (w[j] > 0.f && bucket(j) > cut) s.ids[n_above++] = j;
  }
  int64_t n = n_above;
  for (int32_t j = 0; j < p.vocab; ++j) {
    if (w[j] > 0.f && bucket(j) == cut) s.ids[n++] = j;
  }
  auto heavier = [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
  std::sort(s.ids + n_above, s.ids + n, heavier);
  if (p.top_k > 0) {
    n = std::min(n, p.top_k);
    if (p.top_p >= 1.f) return n;
    // Top-p over the renormalised top-k tokens: they need their full order.
    std::sort(s.ids, s.ids + n, heavier);
    double kept_total = 0.0;
    for (int64_t i = 0; i < n; ++i) kept_total += w[s.ids[i]];
    const double limit = p.top_p * kept_total;
    double before = 0.0;
    int64_t kept = 0;
    while (kept < n && before < limit) before += w[s.ids[kept++]];
    return kept;
  }
  // Top-p alone: every token above the cut bucket has less than topP of the mass before it.
  const double limit = p.top_p * total;
  double before = 0.0;
  for (int64_t i = 0; i < n_above; ++i) before += w[s.ids[i]];
  int64_t kept = n_above;
  while (kept < n && before < limit) before += w[s.ids[kept++]];
  return kept;
}

int32_t sample_row(const SamplingProblem& p, int64_t r, const RowScratch& s) {
  const float* z = static_cast<const float*>(p.logits) + r * p.vocab;
  if (p.inv_temperature == 0.f) return greedy_token(z, p.vocab, p.banned_mask);
  for (int64_t j = 0; j < p.vocab; ++j) s.w[j] = is_banned(p.banned_mask, j) ? -kInf : z[j];
  const float zmax = row_max(s.w, p.vocab);
  if (zmax == -kInf) return -1;
  exp_shifted_sum(s.w, s.w, p.vocab, p.inv_temperature, zmax * p.inv_temperature);
  const double u = sample_uniform(p.seeds[r], static_cast<uint64_t>(p.offsets[r]));
  if (p.top_k == 0 && p.top_p >= 1.f) {
    double total = 0.0;
    for (int64_t j = 0; j < p.vocab; ++j) total += s.w[j];
    return walk(s.w, nullptr, p.vocab, u * total);
  }
  const int64_t n = truncate(p, s);
  double kept_total = 0.0;
  for (int64_t i = 0; i < n; ++i) kept_total += s.w[s.ids[i]];
  return walk(s.w, s.ids, n, u * kept_total);
}

}  // namespace

int64_t sample_tokens_scratch_floats(int64_t vocab) {
  // w and ids (vocab each), then the bucket counts and masses (i32 and f64).
  return 2 * vocab + 3 * kBuckets + 1;
}

void sample_tokens(const SamplingProblem& p, float* scratch) {
  const int64_t stride = sample_tokens_scratch_floats(p.vocab);
  ThreadPool::global().run([&](int thread, int threads) {
    float* base = scratch + thread * stride;
    RowScratch s;
    s.w = base;
    s.ids = reinterpret_cast<int32_t*>(base + p.vocab);
    s.counts = reinterpret_cast<int32_t*>(base + 2 * p.vocab);
    // Doubles at an 8-byte boundary: the scratch tensor is at least 8-byte aligned.
    float* after_counts = base + 2 * p.vocab + kBuckets;
    after_counts += (reinterpret_cast<uintptr_t>(after_counts) % 8) / sizeof(float);
    s.masses = reinterpret_cast<double*>(after_counts);
    for (int64_t r = thread; r < p.rows; r += threads) p.tokens[r] = sample_row(p, r, s);
  });
}

}  // namespace r1v::cpu

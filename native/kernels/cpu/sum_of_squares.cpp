// CPU sumOfSquares: every input is cut into kSquaresChunk-element chunks, each chunk's
// squares are summed in f64 by whichever thread takes it, and the chunk partials are added
// in input order — the same additions in the same order for any thread count.
#include <algorithm>
#include <vector>

#include "../../core/thread_pool.h"
#include "../sum_of_squares.h"

namespace r1v::cpu {

namespace {

// Σ x² over [x, x + n) with eight independent f64 lanes (vectorisable, no reassociation needed).
double chunk_squares(const float* x, int64_t n) {
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) {
      double value = x[i + k];
      lanes[k] += value * value;
    }
  }
  for (; i < n; ++i) {
    double value = x[i];
    lanes[0] += value * value;
  }
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

}  // namespace

void sum_of_squares(const std::vector<SquaresInput>& inputs, float* out) {
  struct Chunk {
    const float* x;
    int64_t n;
  };
  std::vector<Chunk> chunks;
  for (const SquaresInput& in : inputs) {
    const auto* x = static_cast<const float*>(in.data);
    for (int64_t start = 0; start < in.numel; start += kSquaresChunk)
      chunks.push_back({x + start, std::min(kSquaresChunk, in.numel - start)});
  }
  std::vector<double> partials(chunks.size());
  ThreadPool::global().parallel_for(static_cast<int64_t>(chunks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) partials[c] = chunk_squares(chunks[c].x, chunks[c].n);
  });
  double total = 0;
  for (double p : partials) total += p;
  *out = static_cast<float>(total);
}

}  // namespace r1v::cpu

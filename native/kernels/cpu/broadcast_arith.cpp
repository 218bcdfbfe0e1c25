#include <algorithm>

#include "../../core/thread_pool.h"
#include "../broadcast_arith.h"
#include "vec_math.h"

namespace r1v::cpu {

namespace {

R1V_VECTOR_CLONES void add_row(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

R1V_VECTOR_CLONES void mul_row(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

R1V_VECTOR_CLONES void scale_row(const float* x, int64_t n, float alpha, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = alpha * x[i];
}

// Elements per task: enough work to amortise the pool's dispatch.
constexpr int64_t kGrain = 16384;
// Columns per task of the column sums: a cache line's worth or more, so that no two
// threads write the same line of out.
constexpr int64_t kColumnBlock = 64;

}  // namespace

void broadcast_binary(BroadcastOp op, const float* a, int64_t n, const float* b, int64_t nb, float* out) {
  // Chunks of the flat range (so one long row is split too), walked in runs that end where b wraps.
  ThreadPool::global().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      const int64_t j = i % nb, len = std::min(end - i, nb - j);
      if (op == BroadcastOp::Add) {
        add_row(a + i, b + j, len, out + i);
      } else {
        mul_row(a + i, b + j, len, out + i);
      }
      i += len;
    }
  });
}

void scale(const float* x, int64_t n, float alpha, float* out) {
  ThreadPool::global().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    scale_row(x + begin, end - begin, alpha, out + begin);
  });
}

void column_sums(const float* x, const float* w, int64_t rows, int64_t cols, float* out) {
  const int64_t blocks = (cols + kColumnBlock - 1) / kColumnBlock;
  ThreadPool::global().parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t c0 = blk * kColumnBlock, width = std::min(cols, c0 + kColumnBlock) - c0;
      double sum[kColumnBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols + c0;
        if (w) {
          const float* wr = w + r * cols + c0;
          for (int64_t j = 0; j < width; ++j) sum[j] += static_cast<double>(xr[j]) * wr[j];
        } else {
          for (int64_t j = 0; j < width; ++j) sum[j] += xr[j];
        }
      }
      for (int64_t j = 0; j < width; ++j) out[c0 + j] = static_cast<float>(sum[j]);
    }
  });
}

}  // namespace r1v::cpu

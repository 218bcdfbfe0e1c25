#include <algorithm>
#include <cstring>

#include "../../core/error.h"
#include "../../core/thread_pool.h"
#include "../gather_rows.h"
#include "vec_math.h"

namespace r1v::cpu {

namespace {

void check_in_range(const char* op, const char* index, const int32_t* idx, int64_t m, int64_t n) {
  for (int64_t i = 0; i < m; ++i) {
    if (idx[i] < 0 || idx[i] >= n)
      fail(ErrorCode::Argument, op, ": ", index, "[", i, "] = ", idx[i], " is outside [0, ", n, ")");
  }
}

R1V_VECTOR_CLONES void add_row(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

// Bytes copied per task: enough to amortise the pool's dispatch.
constexpr int64_t kCopyGrain = 64 * 1024;
// Columns per task of scatterAddRows: a cache line's worth or more, so that no two threads
// write the same line.
constexpr int64_t kColumnBlock = 64;

void copy_rows(const int32_t* idx, int64_t m, const char* src, int64_t row_bytes, char* dst, bool scatter) {
  ThreadPool::global().parallel_for(m, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(row_bytes, 1)),
                                    [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t row = idx[i];
      if (scatter) {
        std::memcpy(dst + row * row_bytes, src + i * row_bytes, row_bytes);
      } else {
        std::memcpy(dst + i * row_bytes, src + row * row_bytes, row_bytes);
      }
    }
  });
}

}  // namespace

void gather_rows(const char* op, const char* index, const int32_t* idx, int64_t m, const void* x, int64_t n,
                 int64_t row_bytes, void* out) {
  check_in_range(op, index, idx, m, n);
  copy_rows(idx, m, static_cast<const char*>(x), row_bytes, static_cast<char*>(out), false);
}

void scatter_add_rows(const char* op, const char* index, const int32_t* idx, int64_t m, const float* src,
                      int64_t rows, int64_t cols, float* out) {
  check_in_range(op, index, idx, m, rows);
  // Each task owns a block of columns and adds the rows of src in order: deterministic, no atomics.
  const int64_t blocks = (cols + kColumnBlock - 1) / kColumnBlock;
  ThreadPool::global().parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
    const int64_t c0 = begin * kColumnBlock, c1 = std::min(cols, end * kColumnBlock);
    for (int64_t r = 0; r < rows; ++r) std::memset(out + r * cols + c0, 0, sizeof(float) * (c1 - c0));
    for (int64_t i = 0; i < m; ++i) add_row(out + static_cast<int64_t>(idx[i]) * cols + c0, src + i * cols + c0, c1 - c0);
  });
}

void write_rows(const char* op, const int32_t* idx, int64_t m, const void* src, int64_t n, int64_t row_bytes,
                void* dst, uint8_t* seen) {
  check_in_range(op, "idx", idx, m, n);
  std::memset(seen, 0, static_cast<size_t>(n));
  for (int64_t i = 0; i < m; ++i) {
    if (seen[idx[i]]) {
      int64_t first = 0;
      while (idx[first] != idx[i]) ++first;
      fail(ErrorCode::Argument, op, ": idx[", i, "] = ", idx[i], " repeats idx[", first,
           "]; each destination row may be written once");
    }
    seen[idx[i]] = 1;
  }
  copy_rows(idx, m, static_cast<const char*>(src), row_bytes, static_cast<char*>(dst), true);
}

}  // namespace r1v::cpu

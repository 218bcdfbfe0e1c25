#include <algorithm>
#include <cstring>

#include "../../core/error.h"
#include "../../core/thread_pool.h"
#include "../../ops/embedding.h"
#include "vec_math.h"

namespace r1v::cpu {

namespace {

void check_ids_in_range(const char* op, const int32_t* ids, int64_t tokens, int64_t vocab) {
  for (int64_t t = 0; t < tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab)
      fail(ErrorCode::Argument, op, ": ids[", t, "] = ", ids[t], " is outside [0, ", vocab, ")");
  }
}

R1V_VECTOR_CLONES void add_row(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

// Columns per task of the backward: a cache line's worth of floats or more, so that no two
// threads write the same line.
constexpr int64_t kColumnBlock = 64;

}  // namespace

void embedding(const int32_t* ids, int64_t tokens, const float* table, int64_t vocab, int64_t hidden, float* out) {
  check_ids_in_range("embedding", ids, tokens, vocab);
  ThreadPool::global().parallel_for(tokens, std::max<int64_t>(1, 16384 / std::max<int64_t>(hidden, 1)),
                                    [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      std::memcpy(out + t * hidden, table + static_cast<int64_t>(ids[t]) * hidden, sizeof(float) * hidden);
  });
}

void embedding_backward(const int32_t* ids, int64_t tokens, const float* dy, int64_t vocab, int64_t hidden,
                        float* d_table) {
  check_ids_in_range("embeddingBackward", ids, tokens, vocab);
  // Each task owns a block of columns and adds the tokens in order: deterministic, no atomics.
  const int64_t blocks = (hidden + kColumnBlock - 1) / kColumnBlock;
  ThreadPool::global().parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
    const int64_t c0 = begin * kColumnBlock, c1 = std::min(hidden, end * kColumnBlock);
    for (int64_t v = 0; v < vocab; ++v) std::memset(d_table + v * hidden + c0, 0, sizeof(float) * (c1 - c0));
    for (int64_t t = 0; t < tokens; ++t) add_row(d_table + static_cast<int64_t>(ids[t]) * hidden + c0, dy + t * hidden + c0, c1 - c0);
  });
}

}  // namespace r1v::cpu

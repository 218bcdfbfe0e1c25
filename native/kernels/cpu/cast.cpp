#include <algorithm>

#include "../../core/dtype.h"
#include "../../core/thread_pool.h"
#include "../cast.h"

namespace r1v::cpu {

namespace {

float load(DType dtype, const void* x, int64_t i) {
  switch (dtype) {
    case DType::BF16:
      return bf16_bits_to_float(static_cast<const uint16_t*>(x)[i]);
    case DType::F16:
      return f16_bits_to_float(static_cast<const uint16_t*>(x)[i]);
    default:
      return static_cast<const float*>(x)[i];
  }
}

void store(DType dtype, void* out, int64_t i, float v) {
  switch (dtype) {
    case DType::BF16:
      static_cast<uint16_t*>(out)[i] = float_to_bf16_bits(v);
      return;
    case DType::F16:
      static_cast<uint16_t*>(out)[i] = float_to_f16_bits(v);
      return;
    default:
      static_cast<float*>(out)[i] = v;
  }
}

constexpr int64_t kGrain = 16384;

}  // namespace

void cast(DType from, const void* x, int64_t n, DType to, void* out) {
  ThreadPool::global().parallel_for(n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) store(to, out, i, load(from, x, i));
  });
}

}  // namespace r1v::cpu

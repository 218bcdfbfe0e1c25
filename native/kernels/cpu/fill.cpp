// CPU fill: every element set to one value, converted once to the element type.
#include "../fill.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../../core/dtype.h"
#include "../../core/error.h"
#include "../../core/thread_pool.h"

namespace r1v::cpu {

namespace {

// (int32_t)value, but saturating and NaN → 0, since an out-of-range cast is undefined.
int32_t to_i32(double value) {
  if (std::isnan(value)) return 0;
  if (value >= 2147483647.0) return std::numeric_limits<int32_t>::max();
  if (value <= -2147483648.0) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(value);
}

template <typename T>
void fill_parallel(T* data, int64_t count, T value) {
  constexpr int64_t kGrain = int64_t{1} << 16;  // small fills are not worth waking threads
  ThreadPool::global().parallel_for(count, kGrain,
                                    [=](int64_t begin, int64_t end) { std::fill(data + begin, data + end, value); });
}

}  // namespace

void fill(void* data, DType dtype, int64_t count, double value) {
  if (count <= 0) return;
  R1V_CHECK(data != nullptr, Argument, "fill: null data pointer");
  const float as_float = static_cast<float>(value);
  switch (dtype) {
    case DType::F32:
      fill_parallel(static_cast<float*>(data), count, as_float);
      return;
    case DType::BF16:
      fill_parallel(static_cast<uint16_t*>(data), count, float_to_bf16_bits(as_float));
      return;
    case DType::F16:
      fill_parallel(static_cast<uint16_t*>(data), count, float_to_f16_bits(as_float));
      return;
    case DType::I32:
      fill_parallel(static_cast<int32_t*>(data), count, to_i32(value));
      return;
  }
  fail(ErrorCode::DType, "fill: unsupported dtype ", dtype_name(dtype));
}

}  // namespace r1v::cpu

// CPU randn: Philox4x32-10 + Box-Muller. Element i uses counter block i/4 at `offset`;
// lanes 0,1 of a block come from words (0,1), lanes 2,3 from words (2,3), cos then sin.
// kernels/cuda/randn.cu computes the same thing; keep the two in step.
#include "../randn.h"

#include <cmath>
#include <cstdint>

#include "../../core/dtype.h"
#include "../../core/error.h"
#include "../../core/philox.h"
#include "../../core/thread_pool.h"

namespace r1v::cpu {

namespace {

// The four normal samples of counter block `block`, in lane order.
void normal_block(uint64_t block, uint64_t offset, uint64_t seed, float out[4]) {
  const Philox4 r = philox4x32_10(block, offset, seed);
  for (int pair = 0; pair < 2; ++pair) {
    const float u1 = philox_uniform(r.v[2 * pair]);
    const float u2 = philox_uniform(r.v[2 * pair + 1]);
    const float radius = std::sqrt(-2.0f * std::log(u1));
    const float angle = 6.2831853071795864769f * u2;
    out[2 * pair] = radius * std::cos(angle);
    out[2 * pair + 1] = radius * std::sin(angle);
  }
}

template <typename Store>
void randn_blocks(int64_t count, uint64_t seed, uint64_t offset, Store store) {
  const int64_t blocks = (count + 3) / 4;
  constexpr int64_t kGrain = 4096;  // blocks per chunk; each block costs ~10 Philox rounds
  ThreadPool::global().parallel_for(blocks, kGrain, [=](int64_t begin, int64_t end) {
    float values[4];
    for (int64_t block = begin; block < end; ++block) {
      normal_block(static_cast<uint64_t>(block), offset, seed, values);
      const int64_t first = block * 4;
      const int lanes = static_cast<int>(count - first < 4 ? count - first : 4);
      for (int lane = 0; lane < lanes; ++lane) store(first + lane, values[lane]);
    }
  });
}

}  // namespace

void randn(void* data, DType dtype, int64_t count, uint64_t seed, uint64_t offset) {
  if (count <= 0) return;
  R1V_CHECK(data != nullptr, Argument, "randn: null data pointer");
  switch (dtype) {
    case DType::F32: {
      float* out = static_cast<float*>(data);
      randn_blocks(count, seed, offset, [out](int64_t i, float v) { out[i] = v; });
      return;
    }
    case DType::BF16: {
      uint16_t* out = static_cast<uint16_t*>(data);
      randn_blocks(count, seed, offset, [out](int64_t i, float v) { out[i] = float_to_bf16_bits(v); });
      return;
    }
    case DType::F16: {
      uint16_t* out = static_cast<uint16_t*>(data);
      randn_blocks(count, seed, offset, [out](int64_t i, float v) { out[i] = float_to_f16_bits(v); });
      return;
    }
    case DType::I32:
      break;
  }
  fail(ErrorCode::DType, "randn: dtype must be floating, got ", dtype_name(dtype));
}

}  // namespace r1v::cpu

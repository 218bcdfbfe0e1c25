// The kernels linearTokenStats (ops/linear_token_stats.h) adds to run_gemm and the tokenStats
// kernels (kernels/token_stats.h): the f32 sum of a 16-bit dHidden over the vocab chunks, on
// CUDA (the CPU computes in f32 and accumulates through the GEMM epilogue).
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v::cuda {

// acc[i] = src[i] (first) or acc[i] += src[i], src in `dtype` (bf16/f16), acc f32.
void accumulate_f32(float* acc, const void* src, DType dtype, int64_t count, bool first, void* stream);
// dst[i] = src[i] rounded to `dtype`.
void store_f32_as(void* dst, DType dtype, const float* src, int64_t count, void* stream);

}  // namespace r1v::cuda

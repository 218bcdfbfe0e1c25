// The patchify kernels (ops: patchify, unpatchify in ops/patchify.h): the permutation
//   patches[n, i·(W/p) + j, c·p·p + u·p + v] = pixels[n, c, i·p + u, j·p + v]
// and its inverse. CPU: f32; CUDA: f32/bf16/f16 (bit-exact copies).
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace r1v {

// The geometry of one patchify: pixels [n, channels, height, width], square patches of side `patch`.
struct PatchGrid {
  int64_t n, channels, height, width, patch;
};

namespace cpu {
void patchify(const PatchGrid& g, const float* pixels, float* patches);
void unpatchify(const PatchGrid& g, const float* patches, float* pixels);
}  // namespace cpu
namespace cuda {
void patchify(DType dtype, const PatchGrid& g, const void* pixels, void* patches, void* stream);
void unpatchify(DType dtype, const PatchGrid& g, const void* patches, void* pixels, void* stream);
}  // namespace cuda

}  // namespace r1v

// patchify: the data movement that turns a ViT patch embedding (a Conv2d with stride = kernel = p)
// into a GEMM. pixels [N, C, H, W] → patches [N, (H/p)·(W/p), C·p·p] with
//   patches[n, i·(W/p) + j, c·p·p + u·p + v] = pixels[n, c, i·p + u, j·p + v].
// The last index runs over (c, u, v) in the order of a PyTorch Conv2d weight [out, C, p, p] flattened
// to [out, C·p·p], so patches · Wᵀ + b (matmul with transB and bias) equals Conv2d(C, out, p, stride=p)
// with its output [N, out, H/p, W/p] laid out as [N, (H/p)·(W/p), out].
// unpatchify is the exact inverse (a permutation), which is also patchify's backward for dPixels.
#pragma once
#include <cstdint>

#include "../core/tensor.h"

namespace r1v {

// Validate (pixels 4-D with height and width multiples of patch ≥ 1), allocate and enqueue.
Tensor patchify(const Tensor& pixels, int64_t patch);
// patches [N, (height/patch)·(width/patch), channels·patch²] → pixels [N, channels, height, width].
Tensor unpatchify(const Tensor& patches, int64_t channels, int64_t height, int64_t width, int64_t patch);

}  // namespace r1v

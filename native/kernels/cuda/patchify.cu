// CUDA patchify / unpatchify: one thread per output element in output order, so writes are fully
// coalesced; reads come in contiguous runs of p (v = 0..p−1) on both sides. Bit-exact copies.
#include "../patchify.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;
// Offset in pixels [N, C, H, W] of patches[n, i·cols + j, (c·p + u)·p + v], from the patch element
// index e = (n·rows·cols + i·cols + j)·C·p·p + (c·p + u)·p + v.
__device__ __forceinline__ int64_t pixel_offset(int64_t e, int64_t channels, int64_t height, int64_t width, int64_t p,
                                                int64_t cols, int64_t patches_per_image) {
  const int64_t patch_len = channels * p * p;
  const int64_t k = e % patch_len, token = e / patch_len;
  const int64_t n = token / patches_per_image, t = token % patches_per_image;
  const int64_t i = t / cols, j = t % cols;
  const int64_t c = k / (p * p), u = (k / p) % p, v = k % p;
  return ((n * channels + c) * height + i * p + u) * width + j * p + v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    patchify_kernel(int64_t total, int64_t channels, int64_t height, int64_t width, int64_t p, int64_t cols,
                    int64_t patches_per_image, const T* __restrict__ pixels, T* __restrict__ patches) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < total; e += step)
    patches[e] = pixels[pixel_offset(e, channels, height, width, p, cols, patches_per_image)];
}

// Inverse: pixel element index x = ((n·C + c)·H + y)·W + w, with y = i·p + u and w = j·p + v.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    unpatchify_kernel(int64_t total, int64_t channels, int64_t height, int64_t width, int64_t p,
                      const T* __restrict__ patches, T* __restrict__ pixels) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t cols = width / p, patches_per_image = (height / p) * cols, patch_len = channels * p * p;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; x < total; x += step) {
    const int64_t w = x % width, y = (x / width) % height, nc = x / (width * height);
    const int64_t c = nc % channels, n = nc / channels;
    const int64_t token = n * patches_per_image + (y / p) * cols + w / p;
    pixels[x] = patches[token * patch_len + (c * p + y % p) * p + w % p];
  }
}

}  // namespace

void patchify(DType dtype, const PatchGrid& g, const void* pixels, void* patches, void* stream) {
  const int64_t total = g.n * g.channels * g.height * g.width;
  if (total == 0) return;
  const int64_t cols = g.width / g.patch, patches_per_image = (g.height / g.patch) * cols;
  dispatch_float_dtype(dtype, "patchify", [&](auto tag) {
    using T = decltype(tag);
    patchify_kernel<T><<<grid_stride_blocks(total, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        total, g.channels, g.height, g.width, g.patch, cols, patches_per_image, static_cast<const T*>(pixels),
        static_cast<T*>(patches));
    check_launch("patchify");
  });
}

void unpatchify(DType dtype, const PatchGrid& g, const void* patches, void* pixels, void* stream) {
  const int64_t total = g.n * g.channels * g.height * g.width;
  if (total == 0) return;
  dispatch_float_dtype(dtype, "unpatchify", [&](auto tag) {
    using T = decltype(tag);
    unpatchify_kernel<T><<<grid_stride_blocks(total, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        total, g.channels, g.height, g.width, g.patch, static_cast<const T*>(patches), static_cast<T*>(pixels));
    check_launch("unpatchify");
  });
}

}  // namespace r1v::cuda

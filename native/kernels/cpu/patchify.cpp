// CPU patchify / unpatchify: parallel over rows of patches (n, i); within a row every (j, c, u)
// moves one contiguous run of p pixels (v = 0..p−1), which is contiguous on both sides.
#include "../patchify.h"

#include <algorithm>
#include <cstring>

#include "../../core/thread_pool.h"

namespace r1v::cpu {

namespace {

constexpr int64_t kGrainFloats = 16384;  // per task, so tiny images stay on one thread

// Calls run(pixel_offset, patch_offset) for every run of p elements (v = 0..p−1) of g.
template <typename Run>
void for_each_run(const PatchGrid& g, const Run& run) {
  const int64_t p = g.patch, rows = g.height / p, cols = g.width / p;
  const int64_t plane = g.height * g.width, patch_len = g.channels * p * p;
  const int64_t row_floats = g.channels * p * g.width;
  const int64_t grain = std::max<int64_t>(1, kGrainFloats / std::max<int64_t>(1, row_floats));
  ThreadPool::global().parallel_for(g.n * rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / rows, i = r % rows;
      const int64_t image = n * g.channels * plane;  // offset of pixels[n]
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t patch = (r * cols + j) * patch_len;  // offset of patches[n, i·cols + j]
        for (int64_t c = 0; c < g.channels; ++c)
          for (int64_t u = 0; u < p; ++u)
            run(image + c * plane + (i * p + u) * g.width + j * p, patch + (c * p + u) * p);
      }
    }
  });
}

}  // namespace

void patchify(const PatchGrid& g, const float* pixels, float* patches) {
  const size_t bytes = static_cast<size_t>(g.patch) * sizeof(float);
  for_each_run(g, [&](int64_t px, int64_t pt) { std::memcpy(patches + pt, pixels + px, bytes); });
}

void unpatchify(const PatchGrid& g, const float* patches, float* pixels) {
  const size_t bytes = static_cast<size_t>(g.patch) * sizeof(float);
  for_each_run(g, [&](int64_t px, int64_t pt) { std::memcpy(pixels + px, patches + pt, bytes); });
}

}  // namespace r1v::cpu

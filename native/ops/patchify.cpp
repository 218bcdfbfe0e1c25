#include "patchify.h"

#include "../kernels/patchify.h"
#include "dispatch.h"
#include "op_checks.h"

namespace r1v {

namespace {

void check_patch(const char* op, int64_t patch) {
  if (patch < 1) fail(ErrorCode::Argument, op, ": patch must be ≥ 1, got ", patch);
}

void check_multiple(const char* op, const char* what, int64_t size, int64_t patch) {
  if (size % patch != 0) fail(ErrorCode::Shape, op, ": ", what, " ", size, " must be a multiple of patch ", patch);
}

// Enqueues patchify (forward) or unpatchify of g from `src` into `dst` on the engine's device.
void enqueue_permutation(const Tensor& src, const Tensor& dst, const PatchGrid& g, bool forward) {
  enqueue_op(src.context(), {src}, {dst}, [src, dst, g, forward] {
    if (dst.numel() == 0) return;
    on_device(
        *dst.context(), forward ? "patchify" : "unpatchify",
        [&] {
          (forward ? cpu::patchify : cpu::unpatchify)(g, static_cast<const float*>(src.data()),
                                                      static_cast<float*>(dst.data()));
        },
        [&](Stream& s) {
          (forward ? cuda::patchify : cuda::unpatchify)(dst.dtype(), g, src.data(), dst.data(), s.cuda_stream());
        });
  });
}

}  // namespace

Tensor patchify(const Tensor& pixels, int64_t patch) {
  const char* op = "patchify";
  check_live(op, pixels, "pixels");
  check_compute_dtype(op, pixels, "pixels");
  check_ndim(op, pixels, "pixels", 4, "[N, C, H, W]");
  check_patch(op, patch);
  const PatchGrid g{pixels.dim(0), pixels.dim(1), pixels.dim(2), pixels.dim(3), patch};
  check_multiple(op, "pixels height", g.height, patch);
  check_multiple(op, "pixels width", g.width, patch);
  Tensor patches = Tensor::empty(
      pixels.context(), {g.n, (g.height / patch) * (g.width / patch), g.channels * patch * patch}, pixels.dtype());
  enqueue_permutation(pixels, patches, g, true);
  return patches;
}

Tensor unpatchify(const Tensor& patches, int64_t channels, int64_t height, int64_t width, int64_t patch) {
  const char* op = "unpatchify";
  check_live(op, patches, "patches");
  check_compute_dtype(op, patches, "patches");
  check_ndim(op, patches, "patches", 3, "[N, (H/p)·(W/p), C·p·p]");
  check_patch(op, patch);
  if (channels < 1) fail(ErrorCode::Argument, op, ": channels must be ≥ 1, got ", channels);
  if (height < 1) fail(ErrorCode::Argument, op, ": height must be ≥ 1, got ", height);
  if (width < 1) fail(ErrorCode::Argument, op, ": width must be ≥ 1, got ", width);
  check_multiple(op, "height", height, patch);
  check_multiple(op, "width", width, patch);
  const PatchGrid g{patches.dim(0), channels, height, width, patch};
  check_shape(op, patches, "patches", {g.n, (height / patch) * (width / patch), channels * patch * patch});
  Tensor pixels = Tensor::empty(patches.context(), {g.n, channels, height, width}, patches.dtype());
  enqueue_permutation(patches, pixels, g, false);
  return pixels;
}

}  // namespace r1v

// on_device: runs an op's work on the backend of its engine. Every op front-end calls its
// kernels through it, so the choice between CPU and CUDA is made in one place:
//   on_device(ctx, "gelu",
//             [&] { cpu::gelu(n, z, y); },
//             [&](Stream& s) { cuda::gelu(dtype, n, z, y, s.cuda_stream()); });
// The CUDA work is called only in a build with the CUDA backend (R1V_WITH_CUDA), so the cuda::
// kernels it names need no definition in a CPU-only build; the lambda is still compiled there,
// which keeps both paths type-checked in every build. A CUDA engine reaching a CPU-only build
// (which cannot list CUDA devices, so this is a guard, not a path) is Error(Device) naming
// the op, never a silent no-op.
#pragma once
#include "../core/tensor.h"

namespace r1v {

// Whether this binary has the CUDA backend (set by the build: CMakeLists.txt, binding.gyp).
inline constexpr bool kBuiltWithCuda = R1V_WITH_CUDA != 0;

// The CPU work of a step only CUDA has (scratch for a CUDA kernel, f32 sums of 16-bit values).
inline constexpr auto kNoCpuWork = [] {};

template <typename CpuWork, typename CudaWork>
void on_device(Context& ctx, const char* op, CpuWork&& cpu_work, [[maybe_unused]] CudaWork&& cuda_work) {
  if (ctx.device().is_cpu()) {
    cpu_work();
  } else if constexpr (kBuiltWithCuda) {
    cuda_work(ctx.stream());
  } else {
    fail(ErrorCode::Device, op, ": the engine is on ", ctx.device().id(),
         " but this binary was built without the CUDA backend (CPU only)");
  }
}

}  // namespace r1v

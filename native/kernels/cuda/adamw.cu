// CUDA adamwStep: one multi-tensor launch for all groups. The host lays the groups out in a
// table (copied to device scratch) with the first block of each; every block covers
// kBlockElements consecutive elements of one group and finds it by binary search, so a
// model's hundreds of tensors cost one launch and no block idles on a small tensor.
#include <climits>
#include <vector>

#include "../adamw.h"
#include "cuda_common.cuh"

namespace r1v::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kElementsPerThread = 8;
constexpr int64_t kBlockElements = kThreads * kElementsPerThread;

struct DeviceGroup {
  void* param;
  const void* grad;
  float* m;
  float* v;
  float* master;  // null: param is f32 and holds the weights
  int64_t numel;
  int64_t first_block;
  float weight_decay;
  DType dtype;
};

int64_t blocks_for(int64_t numel) { return (numel + kBlockElements - 1) / kBlockElements; }

template <typename T>
__device__ void update_block(const DeviceGroup& g, int64_t begin, const AdamWConstants& c, float scale) {
  T* param = static_cast<T*>(g.param);
  const T* grad = static_cast<const T*>(g.grad);
  const float decay = 1.f - c.lr * g.weight_decay;
  const int64_t end = min(begin + kBlockElements, g.numel);
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    float gi = to_float(grad[i]) * scale;
    float mi = c.beta1 * g.m[i] + c.one_minus_beta1 * gi;
    float vi = c.beta2 * g.v[i] + c.one_minus_beta2 * gi * gi;
    g.m[i] = mi;
    g.v[i] = vi;
    float w = g.master ? g.master[i] : to_float(param[i]);
    w = w * decay - c.step_size * mi / (sqrtf(vi) * c.inv_sqrt_bc2 + c.eps);
    if (g.master) g.master[i] = w;
    param[i] = from_float<T>(w);
  }
}

__global__ void adamw_kernel(const DeviceGroup* __restrict__ groups, int count, AdamWConstants c) {
  // The group whose blocks hold blockIdx.x: the last with first_block ≤ blockIdx.x.
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (groups[mid].first_block <= static_cast<int64_t>(blockIdx.x)) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const DeviceGroup g = groups[lo];
  const int64_t begin = (static_cast<int64_t>(blockIdx.x) - g.first_block) * kBlockElements;
  const float scale = c.grad_scale * (c.grad_scale_tensor ? *c.grad_scale_tensor : 1.f);
  switch (g.dtype) {
    case DType::BF16:
      update_block<__nv_bfloat16>(g, begin, c, scale);
      break;
    case DType::F16:
      update_block<__half>(g, begin, c, scale);
      break;
    default:
      update_block<float>(g, begin, c, scale);
      break;
  }
}

}  // namespace

int64_t args_bytes(int64_t groups) { return groups * static_cast<int64_t>(sizeof(DeviceGroup)); }

void adamw_step(const std::vector<AdamWTensors>& groups, const AdamWConstants& c, void* args, void* stream_ptr) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  if (groups.size() > INT_MAX) fail(ErrorCode::Argument, "adamwStep: too many groups (", groups.size(), ")");
  std::vector<DeviceGroup> table;
  table.reserve(groups.size());
  int64_t blocks = 0;
  for (const AdamWTensors& t : groups) {
    table.push_back({t.param, t.grad, t.m, t.v, t.master, t.numel, blocks, t.weight_decay, t.dtype});
    blocks += blocks_for(t.numel);
  }
  if (blocks > INT_MAX) fail(ErrorCode::Argument, "adamwStep: too many elements for one launch (", blocks, " blocks)");
  // From pageable memory the copy has consumed `table` when it returns, so the vector may go.
  cudaError_t err = cudaMemcpyAsync(args, table.data(), table.size() * sizeof(DeviceGroup), cudaMemcpyHostToDevice, stream);
  if (err != cudaSuccess) fail(ErrorCode::Cuda, "adamwStep: copying the group table failed: ", cudaGetErrorString(err));
  adamw_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(static_cast<const DeviceGroup*>(args),
                                                                       static_cast<int>(table.size()), c);
  check_launch("adamwStep");
}

}  // namespace r1v::cuda

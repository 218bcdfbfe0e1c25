#include "device.h"

#include <cstdlib>
#include <mutex>

#include "cpu_info.h"
#include "error.h"
#include "thread_pool.h"

#if R1V_WITH_CUDA
#include <cuda_runtime.h>
#endif

#ifndef R1V_CUDA_ARCHS
#define R1V_CUDA_ARCHS ""
#endif

namespace r1v {

namespace {

std::vector<DeviceInfo> probe_cuda_devices() {
  std::vector<DeviceInfo> out;
#if R1V_WITH_CUDA
  // No driver or no GPU: cudaGetDeviceCount returns an error, which means "none".
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear it so later calls are not poisoned
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    DeviceInfo info;
    info.device = Device{DeviceKind::CUDA, i};
    info.name = prop.name;
    info.memory_bytes = prop.totalGlobalMem;
    info.compute_major = prop.major;
    info.compute_minor = prop.minor;
    info.multiprocessors = prop.multiProcessorCount;
    out.push_back(info);
  }
#endif
  return out;
}

const std::vector<DeviceInfo>& cuda_devices() {
  static std::vector<DeviceInfo> devices;
  static std::once_flag once;
  std::call_once(once, [] { devices = probe_cuda_devices(); });
  return devices;
}

}  // namespace

int cuda_device_count() { return static_cast<int>(cuda_devices().size()); }

bool built_with_cuda() { return R1V_WITH_CUDA != 0; }

std::string cuda_architectures() { return R1V_CUDA_ARCHS; }

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  DeviceInfo cpu;
  cpu.device = Device{DeviceKind::CPU, 0};
  cpu.name = cpu_info().name;
  cpu.threads = ThreadPool::global().num_threads();
  out.push_back(cpu);
  for (const auto& d : cuda_devices()) out.push_back(d);
  return out;
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device{DeviceKind::CPU, 0};
  int index = -1;
  if (name == "cuda") {
    index = 0;
  } else if (name.rfind("cuda:", 0) == 0 && name.size() > 5 && name.size() <= 8) {
    index = 0;
    for (size_t i = 5; i < name.size(); ++i) {
      if (name[i] < '0' || name[i] > '9')
        fail(ErrorCode::Device, "unknown device '", name, "' (expected 'cpu' or 'cuda:N')");
      index = index * 10 + (name[i] - '0');
    }
  } else {
    fail(ErrorCode::Device, "unknown device '", name, "' (expected 'auto', 'cpu' or 'cuda:N')");
  }
  int count = cuda_device_count();
  if (!built_with_cuda())
    fail(ErrorCode::Device, "device '", name,
         "' is not available: this build of r1v has no CUDA support (rebuild with nvcc present, R1V_CUDA=ON)");
  if (index >= count) fail(ErrorCode::Device, "device '", name, "' is not available: ", count, " CUDA device(s) found");
  return Device{DeviceKind::CUDA, index};
}

}  // namespace r1v

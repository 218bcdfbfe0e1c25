// Devices: the CPU is always present; CUDA devices are found at run time, so a binary
// built with CUDA still loads and runs on a machine without a GPU or driver.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace r1v {

enum class DeviceKind : uint8_t { CPU, CUDA };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;

  bool is_cpu() const { return kind == DeviceKind::CPU; }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  std::string id() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  bool operator==(const Device& other) const { return kind == other.kind && index == other.index; }
  bool operator!=(const Device& other) const { return !(*this == other); }
};

struct DeviceInfo {
  Device device;
  std::string name;
  int threads = 0;            // CPU: worker threads of the pool
  uint64_t memory_bytes = 0;  // CUDA: total device memory
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
};

// All usable devices, the CPU first. CUDA devices appear only when the build has CUDA
// and a driver and GPU are present; any CUDA failure here means "no CUDA devices".
std::vector<DeviceInfo> list_devices();

// Parses "cpu", "cuda" (= cuda:0) or "cuda:N" and checks that the device exists.
// Throws Error(Device) for unknown names and absent devices.
Device parse_device(const std::string& name);

// CUDA device count (0 when the build has no CUDA or the machine has no usable GPU).
int cuda_device_count();

// Whether this binary was compiled with CUDA, and for which architectures.
bool built_with_cuda();
std::string cuda_architectures();

}  // namespace r1v

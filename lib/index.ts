export { R1VError, type R1VErrorCode } from './errors.js';
export { devices, buildInfo, type DeviceInfo, type CpuDeviceInfo, type CudaDeviceInfo, type DeviceId } from './device.js';
export { Engine, type EngineOptions, type MemoryStats, type CpuGemmBackend } from './engine.js';
export { Tensor, type DType, type FloatDType, type HostArray } from './tensor.js';
export * as ops from './ops.js';

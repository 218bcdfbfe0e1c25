import { native } from './native.js';

export interface CpuDeviceInfo {
  id: 'cpu';
  kind: 'cpu';
  name: string;
  /** Worker threads of the CPU pool (R1V_NUM_THREADS, else the CPUs this process may use). */
  threads: number;
}

export interface CudaDeviceInfo {
  id: `cuda:${number}`;
  kind: 'cuda';
  name: string;
  memoryBytes: number;
  computeCapability: [number, number];
  multiprocessors: number;
}

export type DeviceInfo = CpuDeviceInfo | CudaDeviceInfo;
export type DeviceId = 'cpu' | `cuda:${number}`;

/** The devices this process can use: the CPU first, then each CUDA GPU (none without a GPU or driver). */
export function devices(): DeviceInfo[] {
  return native().devices() as DeviceInfo[];
}

/**
 * How the addon was built: CUDA or not (and for which architectures), the BLAS and cuBLASLt
 * libraries it loaded at run time (or null), the CPU ISA in use.
 */
export function buildInfo() {
  return native().buildInfo();
}

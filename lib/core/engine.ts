import { devices, type DeviceId, type DeviceInfo } from './device.js';
import { R1VError } from './errors.js';
import * as is from './validate.js';
import { native, type NativeEngine } from './native.js';
import { Tensor, type DType, type FloatDType } from './tensor.js';

export type CpuGemmBackend = 'auto' | 'builtin' | 'blas';

export interface EngineOptions {
  /** 'auto' (default): $R1V_DEVICE if set, else the first CUDA GPU, else the CPU. */
  device?: 'auto' | DeviceId;
  /** Seed of the engine's random generator (randn without its own seed). Default: random. */
  seed?: number;
  /**
   * CPU GEMM: 'auto' (default) uses the built-in kernel on AVX2/AVX-512 CPUs (faster than the
   * OpenBLAS builds we measured) and BLAS, when loaded, on CPUs where the built-in kernel has
   * only its portable path. 'builtin' / 'blas' force one.
   */
  cpuGemm?: CpuGemmBackend;
  /**
   * Debug aid: fill every new tensor with NaN (0xFF bytes) before any op writes it, so an
   * element an op forgot to write reads back as NaN. Slower; meant for tests.
   */
  poisonNewTensors?: boolean;
}

export interface MemoryStats {
  /** Bytes held by live tensors. */
  allocatedBytes: number;
  /** Highest allocatedBytes since the engine was created (or resetPeakMemory). */
  peakBytes: number;
  /** Bytes obtained from the system: allocated plus the CUDA cache. */
  reservedBytes: number;
}

const ENGINE_OPTIONS = ['device', 'seed', 'cpuGemm', 'poisonNewTensors'] as const;

function resolveDevice(requested: string): string {
  if (requested !== 'auto') return requested;
  const fromEnv = process.env.R1V_DEVICE;
  if (fromEnv && fromEnv !== 'auto') return fromEnv;
  return devices().some((d) => d.kind === 'cuda') ? 'cuda:0' : 'cpu';
}

/** A device with its memory, its ordered work stream and its random generator. */
export class Engine implements Disposable {
  readonly device: DeviceInfo;
  readonly seed: number;
  /** @internal */
  readonly handle: NativeEngine;

  private constructor(handle: NativeEngine, device: DeviceInfo) {
    this.handle = handle;
    this.device = device;
    this.seed = handle.seed;
  }

  static create(options?: EngineOptions): Engine {
    const o = is.options(options, ENGINE_OPTIONS, 'Engine.create');
    const requested = o.device ?? 'auto';
    if (typeof requested !== 'string') throw new R1VError('ARGUMENT', `Engine.create: device must be a string, got ${typeof requested}`);
    const seed = o.seed === undefined ? Math.floor(Math.random() * 2 ** 52) : is.seed(o.seed, 'seed', 'Engine.create');
    const poison = o.poisonNewTensors === undefined ? undefined : is.boolean(o.poisonNewTensors, 'poisonNewTensors', 'Engine.create');
    const cpuGemm = o.cpuGemm === undefined ? undefined : is.oneOf(o.cpuGemm, 'cpuGemm', 'Engine.create', ['auto', 'builtin', 'blas'] as const);
    const id = resolveDevice(requested);
    const handle = new (native().EngineHandle)(id, seed);
    const info = devices().find((d) => d.id === handle.device);
    if (!info) throw new R1VError('DEVICE', `device '${handle.device}' is not in devices()`);
    const engine = new Engine(handle, info);
    try {
      if (cpuGemm !== undefined) engine.setCpuGemm(cpuGemm);
    } catch (error) {
      engine.dispose();
      throw error;
    }
    if (poison !== undefined) handle.setPoisonNewTensors(poison);
    return engine;
  }

  get disposed(): boolean {
    return this.handle.disposed;
  }

  /**
   * A tensor holding a copy of `data`. dtype defaults to 'i32' for Int32Array, else 'f32';
   * bf16/f16 round to nearest even.
   */
  tensor<D extends DType = 'f32'>(
    data: Float32Array | Float64Array | Int32Array | number[],
    shape: number[],
    options?: { dtype?: D },
  ): Tensor<D> {
    const o = is.options(options, ['dtype'], 'tensor');
    const dtype = (o.dtype ?? (data instanceof Int32Array ? 'i32' : 'f32')) as D;
    return new Tensor<D>(this, this.handle.tensor(data, shape, dtype));
  }

  zeros<D extends DType = 'f32'>(shape: number[], options?: { dtype?: D }): Tensor<D> {
    return this.full(shape, 0, options);
  }

  ones<D extends DType = 'f32'>(shape: number[], options?: { dtype?: D }): Tensor<D> {
    return this.full(shape, 1, options);
  }

  full<D extends DType = 'f32'>(shape: number[], value: number, options?: { dtype?: D }): Tensor<D> {
    const o = is.options(options, ['dtype'], 'full');
    return new Tensor<D>(this, this.handle.full(shape, (o.dtype ?? 'f32') as D, value));
  }

  /**
   * Standard normal samples (Philox4x32-10). With a seed the values depend only on it;
   * without, each call draws fresh numbers from the engine's generator (reproducible
   * from Engine.create({ seed })).
   */
  randn<D extends FloatDType = 'f32'>(shape: number[], options?: { seed?: number; dtype?: D }): Tensor<D> {
    const o = is.options(options, ['seed', 'dtype'], 'randn');
    const seed = o.seed === undefined ? undefined : is.seed(o.seed, 'seed', 'randn');
    return new Tensor<D>(this, this.handle.randn(shape, (o.dtype ?? 'f32') as D, seed));
  }

  memoryStats(): MemoryStats {
    return this.handle.memoryStats();
  }

  resetPeakMemory(): void {
    this.handle.resetPeakMemory();
  }

  /** Which CPU GEMM matmul uses on this engine. */
  setCpuGemm(backend: CpuGemmBackend): void {
    this.handle.setCpuGemm(backend);
  }

  /**
   * Resolves when all work queued so far has finished. Rejects with the first error that work
   * raised since the previous synchronize() unless a readback already rejected with it: an
   * error surfaces once (the tensors of the failed op keep it: reading them still rejects).
   */
  synchronize(): Promise<void> {
    try {
      return this.handle.synchronize();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Finishes queued work and frees every tensor of this engine. Safe to call twice. */
  dispose(): void {
    this.handle.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

import type { Engine } from './engine.js';
import { R1VError } from './errors.js';
import type { NativeTensor } from './native.js';

export type DType = 'f32' | 'bf16' | 'f16' | 'i32';
export type FloatDType = Exclude<DType, 'i32'>;
/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = { f32: 4, bf16: 2, f16: 2, i32: 4 };
/** What reading a tensor back gives: i32 → Int32Array, any float dtype → Float32Array. */
export type HostArray<D extends DType> = D extends 'i32' ? Int32Array : Float32Array;

// Tensors the user forgot to dispose free their memory when they are collected.
const forgotten = new FinalizationRegistry<NativeTensor>((handle) => handle.dispose());

/**
 * A dense, row-major array on one engine's device. Ops on tensors are queued on the
 * engine's stream and run off the JavaScript thread; reading back (toArray) waits for them.
 */
export class Tensor<D extends DType = DType> implements Disposable {
  readonly engine: Engine;
  #handle: NativeTensor | null;

  /** @internal Engines and ops create tensors; users do not. */
  constructor(engine: Engine, handle: NativeTensor) {
    this.engine = engine;
    this.#handle = handle;
    forgotten.register(this, handle, this);
  }

  /** @internal The native handle; throws R1VError('DISPOSED') once disposed. */
  get handle(): NativeTensor {
    if (!this.#handle) throw new R1VError('DISPOSED', 'tensor is disposed');
    return this.#handle;
  }

  get shape(): number[] {
    return this.handle.shape;
  }

  get dtype(): D {
    return this.handle.dtype as D;
  }

  /** Device id: 'cpu' or 'cuda:N'. */
  get device(): string {
    return this.handle.device;
  }

  get numel(): number {
    return this.handle.numel;
  }

  /** True after dispose(), or once its engine is disposed. */
  get disposed(): boolean {
    return this.#handle === null || this.#handle.disposed;
  }

  /**
   * Copies the values out once all queued work on the tensor is done. Rejects with the error of
   * the op that should have written it (again on every read); the engine's next synchronize()
   * then does not raise that error again.
   */
  toArray(): Promise<HostArray<D>> {
    try {
      return this.handle.toArray() as Promise<HostArray<D>>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Like toArray, but blocks the JavaScript thread until the values are ready. */
  toArraySync(): HostArray<D> {
    return this.handle.toArraySync() as HostArray<D>;
  }

  /** Frees the memory (after queued work using it). Safe to call twice. */
  dispose(): void {
    if (!this.#handle) return;
    forgotten.unregister(this);
    this.#handle.dispose();
    this.#handle = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    if (this.disposed) return 'Tensor(disposed)';
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device})`;
  }
}

// Collectives for data-parallel training: one Communicator per process over the processes of a
// job launched with `mpirun -np N node train.mjs` (MPI carries CPU tensors, host values and the
// rendezvous; NCCL carries CUDA tensors, one process per GPU), or a world of one that needs no
// MPI at all. Conventions:
// - Every process calls the same collectives in the same order, from one JavaScript thread.
// - Tensor collectives are queued on the tensors' engine like any op: they run in order with that
//   engine's other ops (a gradient all-reduce queued after backward sees the finished gradients)
//   and return at once. Their failures arrive as every op's do: on the outputs (readback rejects)
//   and once at the next synchronize(), as R1VError('DISTRIBUTED').
// - allReduceStart is allReduce overlapped with the engine's later ops (its exchange runs on the
//   engine's side stream); wait() queues its end. The gradient buckets of data parallelism use it.
// - Host collectives (values, bytes, barrier) return Promises; they run off the JavaScript thread.
// - Every collective has a deadline (timeoutMs from when its work starts). A timeout fails it
//   naming the rank, the collective, the element count and the timeout, and breaks the
//   communicator: every later collective fails at once with the same cause. End the job then
//   with abort(). A process killed outright ends the job through mpirun itself.
// - Bind each process to its GPU by localRank (Engine.create({ device: `cuda:${comm.localRank}` })).
// Argument checks are here (lib/core/validate.ts); the agreement of the ranks on dtype, element
// count and root is checked natively before any data moves (native/collectives/communicator.h).
import { R1VError } from '../core/errors.js';
import { native, type NativeCommunicatorInfo, type NativeTensor } from '../core/native.js';
import type { Tensor } from '../core/tensor.js';
import * as check from '../core/validate.js';
import { tensorArg, wrap } from './common.js';

export type ReduceOp = 'sum' | 'max' | 'min';

/** A collective started with Communicator.allReduceStart. */
export interface StartedCollective {
  /** Queues the end of the exchange: ops queued after this see its result. Once. */
  wait(): void;
}
const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'max', 'min'];

export interface CommunicatorOptions {
  /** Deadline of every collective in ms, an integer ≥ 1; default 300000 (5 minutes). */
  timeoutMs?: number;
}

let world: Communicator | undefined;

export class Communicator {
  readonly rank: number;
  readonly worldSize: number;
  /** This process's rank among those on its host (the GPU to bind: cuda:<localRank>). */
  readonly localRank: number;
  readonly localSize: number;
  readonly backend: 'mpi' | 'single';
  /** The deadline of every collective, in ms. */
  readonly timeoutMs: number;

  private constructor(info: NativeCommunicatorInfo) {
    this.rank = info.rank;
    this.worldSize = info.worldSize;
    this.localRank = info.localRank;
    this.localSize = info.localSize;
    this.backend = info.backend;
    this.timeoutMs = info.timeoutMs;
  }

  /**
   * The job's communicator: MPI when an MPI launcher started this process (OMPI_COMM_WORLD_SIZE,
   * PMIX_RANK or PMI_SIZE in the environment; MPI_Init_thread runs on this first call), else a
   * world of one process that needs no MPI (every collective is then the identity, still queued in
   * order). One per process: later calls return the same object; one naming another timeoutMs is
   * R1VError('ARGUMENT'). Under mpirun without the MPI backend (a build without MPI, the node-gyp
   * build) it throws R1VError('DISTRIBUTED') saying what to install and rebuild.
   */
  static world(options?: CommunicatorOptions): Communicator {
    const where = 'Communicator.world';
    const o = check.options(options, ['timeoutMs'], where);
    const timeoutMs = o.timeoutMs === undefined ? undefined : check.number(o.timeoutMs, 'timeoutMs', where, { integer: true, min: 1 });
    const info = native().commWorld(timeoutMs === undefined ? undefined : { timeoutMs });
    world ??= new Communicator(info);
    return world;
  }

  /**
   * Element-wise reduction over the ranks, IN PLACE, of every tensor (each rank passes tensors of
   * the same shapes and dtypes, in the same order). All on one engine; CPU: f32 or i32 (MPI),
   * CUDA: f32, bf16, f16 or i32 (NCCL). Queued; op defaults to 'sum'.
   */
  allReduce(tensors: readonly Tensor[], options?: { op?: ReduceOp }): void {
    const fn = 'allReduce';
    native().commAllReduce(this.#reducible(tensors, fn), reduceOp(options, fn));
  }

  /**
   * allReduce overlapped with the engine's later work: the exchange runs beside the engine's
   * queue (its own thread, and on CUDA its own stream) as soon as the ops queued before this
   * call have run, while the ops queued after it go on. Until `wait()` the tensors must not be
   * used by any op; `wait()` queues the end of the exchange, so the ops queued after it see the
   * summed values (or the collective's error). Every rank must start and wait in the same order
   * as its other collectives. Wait for each started collective once.
   */
  allReduceStart(tensors: readonly Tensor[], options?: { op?: ReduceOp }): StartedCollective {
    const fn = 'allReduceStart';
    const id = native().commAllReduceStart(this.#reducible(tensors, fn), reduceOp(options, fn));
    return { wait: () => native().commWait(id) };
  }

  /** Root's values into every rank's tensors, IN PLACE; any dtype. Queued. */
  broadcast(tensors: readonly Tensor[], options: { root: number }): void {
    const fn = 'broadcast';
    const list = this.#tensors(tensors, fn);
    const o = check.options(options, ['root'], fn);
    native().commBroadcast(list.map((t) => t.handle), this.#root(o.root, fn));
  }

  /** [W·n, ...] from every rank's [n, ...] (rank r's rows at [r·n, (r+1)·n)); any dtype. Queued. */
  allGather(x: Tensor): Tensor {
    const t = live(x, 'allGather: x');
    if (t.shape.length === 0) check.fail('allGather', 'x must have at least one dimension', 'SHAPE');
    return wrap(t, native().commAllGather(t.handle));
  }

  /**
   * [W·n, ...] → [n, ...]: rank r gets rows [r·n, (r+1)·n) of the reduction over the ranks.
   * Dtypes as allReduce; the first dimension must be a multiple of worldSize. Queued.
   */
  reduceScatter(x: Tensor, options?: { op?: ReduceOp }): Tensor {
    const fn = 'reduceScatter';
    const t = reducible(live(x, `${fn}: x`), `${fn}: x`);
    const rows = t.shape[0];
    if (rows === undefined || rows % this.worldSize !== 0) {
      check.fail(fn, `x's first dimension must be a multiple of the world size ${this.worldSize}, got shape [${t.shape.join(', ')}]`, 'SHAPE');
    }
    return wrap(t, native().commReduceScatter(t.handle, reduceOp(options, fn)));
  }

  /** Resolves once every rank has reached it. */
  barrier(): Promise<void> {
    return native().commBarrier();
  }

  /**
   * Element-wise reduction of host values over the ranks (the same count everywhere), in float64
   * (NaN and ±Inf pass through as IEEE arithmetic has them). A new array; `values` is not changed.
   */
  allReduceValues(values: Float64Array | readonly number[], op: ReduceOp = 'sum'): Promise<Float64Array> {
    const fn = 'allReduceValues';
    if (!(values instanceof Float64Array) && !Array.isArray(values)) {
      check.fail(fn, `values must be a Float64Array or an array of numbers, got ${check.show(values)}`);
    }
    const list = values as ArrayLike<unknown>;
    for (let i = 0; i < list.length; i++) {
      if (typeof list[i] !== 'number') check.fail(fn, `values[${i}] must be a number, got ${check.show(list[i])}`);
    }
    return native().commAllReduceValues(Float64Array.from(list as ArrayLike<number>), check.oneOf(op, 'op', fn, REDUCE_OPS));
  }

  /** Every rank's bytes (any length per rank), index = rank. */
  allGatherBytes(bytes: Uint8Array): Promise<Uint8Array[]> {
    if (!(bytes instanceof Uint8Array)) check.fail('allGatherBytes', `bytes must be a Uint8Array, got ${check.show(bytes)}`);
    return native().commAllGatherBytes(bytes);
  }

  /** Root's bytes on every rank; `bytes` is read on the root only (pass undefined elsewhere). */
  broadcastBytes(bytes: Uint8Array | undefined, root: number): Promise<Uint8Array> {
    const fn = 'broadcastBytes';
    const r = this.#root(root, fn);
    if (r === this.rank && !(bytes instanceof Uint8Array)) check.fail(fn, `bytes must be a Uint8Array on the root, got ${check.show(bytes)}`);
    if (r !== this.rank && bytes !== undefined && !(bytes instanceof Uint8Array)) {
      check.fail(fn, `bytes must be a Uint8Array or undefined, got ${check.show(bytes)}`);
    }
    return native().commBroadcastBytes(bytes, r);
  }

  /**
   * Ends the whole job (MPI_Abort with exitCode, default 1) after printing `message` to stderr
   * prefixed with the rank. In a world of one there is no job to end: throws R1VError('DISTRIBUTED').
   */
  abort(message: string, exitCode = 1): never {
    const fn = 'abort';
    native().commAbort(check.string(message, 'message', fn), check.number(exitCode, 'exitCode', fn, { integer: true, min: 1, max: 255 }));
    throw new R1VError('DISTRIBUTED', `abort: ${message}`);  // not reached: the native call does not return
  }

  #tensors(tensors: readonly Tensor[], fn: string): Tensor[] {
    if (!Array.isArray(tensors)) check.fail(fn, `tensors must be an array of tensors, got ${check.show(tensors)}`);
    const list = (tensors as readonly unknown[]).map((t, i) => live(t, `${fn}: tensors[${i}]`));
    if (list.length === 0) check.fail(fn, 'tensors must hold at least one tensor');
    for (const [i, t] of list.entries()) {
      if (t.engine !== list[0]!.engine) check.fail(fn, `tensors[${i}] (${t.device}) and tensors[0] (${list[0]!.device}) belong to different engines`, 'DEVICE');
    }
    return list;
  }

  /** The native handles of a list that an all-reduce takes (see reducible). */
  #reducible(tensors: readonly Tensor[], fn: string): NativeTensor[] {
    const list = this.#tensors(tensors, fn);
    for (const [i, t] of list.entries()) reducible(t, `${fn}: tensors[${i}]`);
    return list.map((t) => t.handle);
  }

  #root(root: unknown, fn: string): number {
    return check.number(root, 'root', fn, { integer: true, min: 0, max: this.worldSize - 1 });
  }
}

function live(value: unknown, name: string): Tensor {
  const t = tensorArg<Tensor>(value, name);
  if (t.disposed) throw new R1VError('DISPOSED', `${name} is disposed`);
  return t;
}

/** CPU reductions (MPI) take f32 or i32; CUDA (NCCL) every engine dtype. */
function reducible(t: Tensor, name: string): Tensor {
  if (t.device === 'cpu' && t.dtype !== 'f32' && t.dtype !== 'i32') {
    throw new R1VError('DTYPE', `${name} is ${t.dtype}; reductions of CPU tensors take f32 or i32 (cast first)`);
  }
  return t;
}

function reduceOp(options: { op?: ReduceOp } | undefined, fn: string): ReduceOp {
  const o = check.options(options, ['op'], fn);
  return check.optionalOneOf(o.op, 'op', fn, REDUCE_OPS, 'sum');
}

// The gradient all-reduce of one data-parallel update, in buckets overlapped with backward.
//
//   plan      the trainable parameters in the order backward finishes them (the model's order
//             reversed: LM head and final norm, decoder layers from the top, embeddings,
//             connector, vision tower from the top), cut into buckets of about BUCKET_BYTES.
//             Every rank has the same model, so the same buckets in the same order.
//   overlap   (on by default on CUDA, where NCCL runs on a stream of its own and hides behind the
//             backward kernels; off by default on the CPU, where MPI's copies take the cores
//             backward computes on: on a 2-core machine overlapping made a step slower, see
//             bench:collectives) during the last micro-batch's backward the model reports the parameters whose
//             gradients are final (a block's, once its backward is queued); a bucket whose
//             parameters are all final is started (Collectives.allReduceStart) in plan order, and
//             its exchange runs beside the rest of backward. Backward reports every parameter at
//             its end, so every rank has started every bucket, in the same order, when backward
//             returns. A rank whose micro-batch has no image finishes the vision parameters only
//             then: its later buckets start late, never out of order.
//   agree     before any bucket starts, the ranks agree that every one of them reached its last
//             backward with finite losses (one small all-reduce); if one did not, no bucket
//             starts, and the step is skipped alike everywhere.
//   absent    a parameter without a gradient on this rank takes part with zeros. The last bucket
//             also carries one flag per planned parameter (1: this rank had a gradient when its
//             bucket started), summed with it; a parameter no rank has a gradient for is left
//             without one, as one process would.
import { DTYPE_BYTES, type Tensor } from '../core/tensor.js';
import type { VisionLanguageModel } from '../model/model.js';
import type { Parameter } from '../model/parameters.js';
import type { Collectives } from './data-parallel.js';

/** Gradients summed per collective: about this many bytes of tensors at a time. */
export const BUCKET_BYTES = 32 << 20;

interface Bucket {
  params: Parameter[];
  /** Started: the handle to wait for. */
  started?: { wait(): void };
}

export interface GradientBucketOptions {
  /** About this many bytes of gradients per all-reduce. Default BUCKET_BYTES (32 MiB). */
  bucketBytes?: number;
  /** Start buckets during backward. Default: on for a CUDA engine, off on the CPU. */
  overlap?: boolean;
}

export class GradientBuckets {
  /** Whether buckets start during backward (else all after it, in finish()). */
  readonly overlap: boolean;
  readonly #buckets: Bucket[] = [];
  /** The planned parameters, in plan order (the buckets' in turn). */
  readonly #plan: Parameter[];
  readonly #final = new Set<Parameter>();
  /** Per planned parameter, in plan order, as its bucket started: 1 when this rank had a gradient. */
  readonly #hadGradient: number[] = [];
  /** The flags the last bucket carries. */
  #flags: Tensor<'f32'> | undefined;
  #next = 0;
  #agreed: boolean | undefined;
  /** How the last finish() went: buckets in all, and those started before it (during backward). */
  readonly stats = { buckets: 0, startedDuringBackward: 0 };

  constructor(readonly comm: Collectives, readonly model: VisionLanguageModel, options: GradientBucketOptions = {}) {
    const bucketBytes = options.bucketBytes ?? BUCKET_BYTES;
    this.overlap = options.overlap ?? model.engine.device.kind === 'cuda';
    this.#plan = model.parameterStates().filter((p) => p.trainable).reverse();
    let bucket: Bucket = { params: [] }, bytes = 0;
    for (const p of this.#plan) {
      bucket.params.push(p);
      bytes += p.value.numel * DTYPE_BYTES[p.value.dtype];
      if (bytes >= bucketBytes) {
        this.#buckets.push(bucket);
        bucket = { params: [] };
        bytes = 0;
      }
    }
    if (bucket.params.length > 0) this.#buckets.push(bucket);
    this.stats.buckets = this.#buckets.length;
  }

  /**
   * Whether every rank reached its last backward with finite losses (`finite`: this rank did).
   * Once per update, before the last backward or when a rank stops early; later calls return
   * the first answer.
   */
  async agree(finite: boolean): Promise<boolean> {
    this.#agreed ??= (await this.comm.allReduceValues([finite ? 0 : 1], 'max'))[0] === 0;
    return this.#agreed;
  }

  /** The backward options of the update's last backward: overlapped, the hook; else none. */
  async lastBackward(): Promise<{ onGradients: (params: readonly Parameter[]) => void } | undefined> {
    return this.overlap && (await this.agree(true)) ? { onGradients: this.final } : undefined;
  }

  /** The backward hook: these parameters' gradients are final (their producers are queued). */
  readonly final = (params: readonly Parameter[]): void => {
    if (!this.#agreed) return;
    for (const p of params) this.#final.add(p);
    while (this.#next < this.#buckets.length && this.#buckets[this.#next]!.params.every((p) => this.#final.has(p))) {
      this.#start(this.#buckets[this.#next++]!);
    }
  };

  #start(bucket: Bucket): void {
    const engine = this.model.engine;
    for (const p of bucket.params) {
      this.#hadGradient.push(p.grad ? 1 : 0);
      p.grad ??= engine.zeros(p.value.shape, { dtype: p.value.dtype });
    }
    const tensors: Tensor[] = bucket.params.map((p) => p.grad!);
    if (this.#next === this.#buckets.length) {
      this.#flags = engine.tensor(Float32Array.from(this.#hadGradient), [this.#hadGradient.length]);
      tensors.push(this.#flags);
    }
    bucket.started = this.comm.allReduceStart(tensors, { op: 'sum' });
  }

  /**
   * Sums the gradients over the ranks: starts the buckets not started yet, queues the end of
   * each, and leaves without a gradient the parameters no rank had one for. Call after agree()
   * answered true on every rank and the update's backward has run.
   */
  async finish(): Promise<void> {
    this.stats.startedDuringBackward = this.#next;
    this.final(this.#plan);
    for (const b of this.#buckets) b.started!.wait();
    if (!this.#flags) return;  // nothing trainable
    const counts = await this.#flags.toArray();
    this.dispose();
    this.#plan.forEach((p, i) => {
      if (counts[i] === 0) {
        p.grad!.dispose();
        p.grad = undefined;
      }
    });
  }

  /** Frees the flags (an update that ended without finish(), or after it). */
  dispose(): void {
    this.#flags?.dispose();
    this.#flags = undefined;
  }
}

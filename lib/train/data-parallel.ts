// Data parallelism for the trainer: N processes (ranks) share each step's global batch and end
// it with identical weights, as one process would have reached with the same batch.
//
//   rows          every rank draws the same rows (same sampler, same seed); rank r takes rows
//                 r, r + N, r + 2N, ... so a prompt's whole group is generated on one rank
//                 (GRPO's group statistics need all of it); a sample's draws depend only on the
//                 seed and its prompt, so it is the sample one process would have drawn
//   global view   samples are exchanged without their prompts and pixels (rewards, tokens,
//                 logprobs, entropy, values): every rank computes the same metrics, dynamic
//                 sampling decisions and advantages over the whole batch, ordered by group
//   updates       a rank runs forward/backward on its own samples with their shares of the
//                 global mini-batch (update.ts); the gradients are summed over ranks in buckets
//                 overlapped with the last backward (gradient-buckets.ts) before the optimizer
//                 step, which every rank takes identically (same gradients, clipping and state)
//   checkpoints   rank 0 writes them; the others wait at a barrier. A checkpoint holds nothing
//                 per rank, so a run resumes at any world size
//
// The collectives are a structural interface: Communicator (lib/ops/collectives.ts, MPI for CPU
// tensors and NCCL for CUDA tensors) is one.
import { R1VError, type R1VErrorCode } from '../core/errors.js';
import * as is from '../core/validate.js';
import type { Tensor } from '../core/tensor.js';
import type { DatasetRow } from '../data/dataset.js';
import type { VisionLanguageModel } from '../model/model.js';
import type { AdamW } from '../optim/adamw.js';
import { BUCKET_BYTES, GradientBuckets, type GradientBucketOptions } from './gradient-buckets.js';
import type { RolloutSample } from './samples.js';

/** What data parallelism needs of a communicator. */
export interface Collectives {
  readonly rank: number;
  readonly worldSize: number;
  /** This process's index among the ranks of its node (it picks the GPU). */
  readonly localRank: number;
  allReduce(tensors: readonly Tensor[], options?: { op?: 'sum' | 'max' | 'min' }): void;
  allReduceStart(tensors: readonly Tensor[], options?: { op?: 'sum' | 'max' | 'min' }): { wait(): void };
  broadcast(tensors: readonly Tensor[], options: { root: number }): void;
  allReduceValues(values: Float64Array | readonly number[], op?: 'sum' | 'max' | 'min'): Promise<Float64Array>;
  allGatherBytes(bytes: Uint8Array): Promise<Uint8Array[]>;
  broadcastBytes(bytes: Uint8Array | undefined, root: number): Promise<Uint8Array>;
  barrier(): Promise<void>;
}

type ArrayField = 'responseIds' | 'logprobs' | 'entropy' | 'values' | 'refLogprobs' | 'returns';
const ARRAY_FIELDS: readonly ArrayField[] = ['responseIds', 'logprobs', 'entropy', 'values', 'refLogprobs', 'returns'];

/** A sample as it travels: no prompt, no pixels, no row (the rank that generated it keeps those). */
interface WireSample {
  group: number;
  reward: number;
  rewards: Record<string, number>;
  finishReason: RolloutSample['finishReason'];
  arrays: Partial<Record<ArrayField, string>>;
}

const NO_ROW: DatasetRow = { question: '', answer: '' };

function toBase64(a: Int32Array | Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

function fromBase64(s: string, kind: ArrayField): Int32Array | Float32Array {
  const b = Buffer.from(s, 'base64');
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return kind === 'responseIds' ? new Int32Array(copy.buffer) : new Float32Array(copy.buffer);
}

function encode(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

function decode<T>(bytes: Uint8Array): T {
  return JSON.parse(new TextDecoder().decode(bytes)) as T;
}

/** How the gradients travel (gradient-buckets.ts), and whether the optimizer state is sharded. */
export interface DataParallelOptions extends GradientBucketOptions {
  /**
   * ZeRO-1: each parameter's optimizer state (AdamW's two f32 moments) lives on one rank, which
   * updates it and broadcasts the new weights; about 1/N of the state per rank. Default false.
   */
  shardOptimizer?: boolean;
}

export class DataParallel {
  readonly gradients: GradientBucketOptions;
  readonly shardsOptimizer: boolean;
  #lastBuckets: GradientBuckets | undefined;

  constructor(readonly comm: Collectives, options: DataParallelOptions = {}) {
    const fn = 'DataParallel';
    const o = is.options(options, ['bucketBytes', 'overlap', 'shardOptimizer'], fn);
    this.shardsOptimizer = is.optionalBoolean(o.shardOptimizer, 'shardOptimizer', fn, false);
    this.gradients = {
      bucketBytes: is.optionalNumber(o.bucketBytes, 'bucketBytes', fn, BUCKET_BYTES, { integer: true, min: 1 }),
      ...(o.overlap !== undefined ? { overlap: is.boolean(o.overlap, 'overlap', fn) } : {}),
    };
  }

  get rank(): number {
    return this.comm.rank;
  }

  get worldSize(): number {
    return this.comm.worldSize;
  }

  /** Whether rank 0 (the one that writes files). */
  get isMain(): boolean {
    return this.comm.rank === 0;
  }

  /** The indices of `items` this rank works on: rank, rank + N, rank + 2N, ... */
  share(count: number): number[] {
    const out: number[] = [];
    for (let i = this.rank; i < count; i += this.worldSize) out.push(i);
    return out;
  }

  /** Each value summed over the ranks. */
  async sum(values: readonly number[]): Promise<number[]> {
    return Array.from(await this.comm.allReduceValues(Float64Array.from(values), 'sum'));
  }

  /** Numeric records summed key by key over the ranks (a key missing on a rank counts 0 there). */
  async sumRecords(record: Record<string, number>): Promise<Record<string, number>> {
    // JSON has no NaN or ±Infinity: the values travel as strings
    const sent = Object.fromEntries(Object.entries(record).map(([k, v]) => [k, String(v)]));
    const all = (await this.comm.allGatherBytes(encode(sent))).map((b) => decode<Record<string, string>>(b));
    const out: Record<string, number> = {};
    for (const r of all) for (const [k, v] of Object.entries(r)) out[k] = (out[k] ?? 0) + Number(v);
    return out;
  }

  /**
   * The samples of every rank, ordered by group (a stable sort: the samples of a group keep
   * their order): this rank's own objects, the others' as copies without prompt and row.
   */
  async gatherSamples(own: readonly RolloutSample[]): Promise<RolloutSample[]> {
    const wire: WireSample[] = own.map((s) => ({
      group: s.group, reward: s.reward, rewards: s.rewards, finishReason: s.finishReason,
      arrays: Object.fromEntries(ARRAY_FIELDS.filter((f) => s[f] !== undefined).map((f) => [f, toBase64(s[f]!)])),
    }));
    const parts = (await this.comm.allGatherBytes(encode(wire))).map((b) => decode<WireSample[]>(b));
    const all: RolloutSample[] = [];
    parts.forEach((part, rank) => {
      if (rank === this.rank) all.push(...own);
      else {
        for (const w of part) {
          const arrays = Object.fromEntries(Object.entries(w.arrays).map(([f, s]) => [f, fromBase64(s, f as ArrayField)]));
          all.push({
            group: w.group, reward: w.reward, rewards: w.rewards, finishReason: w.finishReason, row: NO_ROW, text: '',
            promptIds: new Int32Array(0), responseIds: new Int32Array(0), logprobs: new Float32Array(0), entropy: new Float32Array(0),
            ...arrays,
          });
        }
      }
    });
    return all.sort((a, b) => a.group - b.group);  // Array.prototype.sort is stable
  }

  /** The gradient all-reduce of one update (gradient-buckets.ts); none in a world of one. */
  gradientBuckets(model: VisionLanguageModel): GradientBuckets | undefined {
    if (this.worldSize === 1) return undefined;
    this.#lastBuckets = new GradientBuckets(this.comm, model, this.gradients);
    return this.#lastBuckets;
  }

  /** The last update's gradient buckets: how many, and how many started during backward. */
  get gradientStats(): { buckets: number; startedDuringBackward: number } | undefined {
    return this.#lastBuckets && { ...this.#lastBuckets.stats };
  }

  /**
   * ZeRO-1 (when shardOptimizer): the optimizer keeps the state of this rank's parameters only.
   * Owners are given greedily, in the model's parameter order, to the rank with the fewest
   * elements so far, so every rank computes the same owners.
   */
  shardOptimizer(optimizer: AdamW): void {
    if (!this.shardsOptimizer || this.worldSize === 1) return;
    const load = new Array<number>(this.worldSize).fill(0);
    const owner = new Map<string, number>();
    for (const p of optimizer.model.parameterStates()) {
      const r = load.indexOf(Math.min(...load));
      owner.set(p.name, r);
      if (p.trainable) load[r]! += p.value.numel;
    }
    optimizer.shard({ comm: this.comm, ownerOf: (name) => owner.get(name) ?? 0 });
  }

  /** Rank 0's weights (and f32 master copies) on every rank: the ranks start from the same point. */
  broadcastParameters(model: VisionLanguageModel): void {
    if (this.worldSize === 1) return;
    const tensors = model.parameterStates().flatMap((p) => (p.master ? [p.value, p.master] : [p.value]));
    this.comm.broadcast(tensors, { root: 0 });
  }

  barrier(): Promise<void> {
    return this.comm.barrier();
  }

  /** Whether `flag` is true on any rank (e.g. a stop asked on one of them). */
  async any(flag: boolean): Promise<boolean> {
    return (await this.comm.allReduceValues([flag ? 1 : 0], 'max'))[0]! > 0;
  }
}

/**
 * Runs `work` on rank 0 first, then (when it succeeded) on the other ranks: rank 0 creates what
 * the others then open. An error on rank 0 is raised on every rank, naming rank 0. Without data
 * parallelism it is just `work(true)`.
 */
export async function mainFirst<T>(dp: DataParallel | undefined, work: (isMain: boolean) => Promise<T>): Promise<T> {
  if (!dp) return work(true);
  let result: T | undefined, failure: unknown;
  if (dp.isMain) {
    try {
      result = await work(true);
    } catch (error) {
      failure = error;
    }
  }
  const status = failure === undefined ? {} : { code: (failure as R1VError).code ?? 'IO', message: (failure as Error).message ?? String(failure) };
  const seen = decode<{ code?: R1VErrorCode; message?: string }>(await dp.comm.broadcastBytes(dp.isMain ? encode(status) : undefined, 0));
  if (dp.isMain) {
    if (failure !== undefined) throw failure;
    return result as T;
  }
  if (seen.message !== undefined) throw new R1VError(seen.code ?? 'IO', `rank 0: ${seen.message}`);
  return work(false);
}

/** The device of a rank: with several ranks, a bare 'cuda' is the GPU of the rank's local rank. */
export function rankDevice(device: string, comm: Collectives | undefined): string {
  return comm && comm.worldSize > 1 && device === 'cuda' ? `cuda:${comm.localRank}` : device;
}

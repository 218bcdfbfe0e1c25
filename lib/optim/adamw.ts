// AdamW over a model's trainable parameters (torch.optim.AdamW semantics: decoupled weight
// decay, bias correction with a per-parameter step count, parameters without a gradient skipped),
// with optional clipping by the global gradient norm. State (exp_avg, exp_avg_sq) is f32; 16-bit
// parameters are updated through their f32 master copies.
//
// The state is saved as optimizer.safetensors beside the model files, recording the id of the
// model weights it belongs to (the model's stateId, which every step renews); loading refuses a
// state whose id differs from the model files in the directory (a model and an optimizer from
// different steps, e.g. a save killed between the two). A state without an id (older files) loads
// with a warning. Loading also refuses states no optimizer can produce: non-finite moments,
// negative second moments, step counts that are not non-negative integers.
//
// Sharded (ZeRO-1, `shard()`): in a data-parallel job each parameter's state lives on one rank,
// its owner, which alone updates it and then broadcasts the new weights (and f32 master copies);
// the gradients are already summed on every rank, so the global norm, the clipping and the skip
// decision are the same everywhere, and the weights come out bitwise as unsharded. Saving needs
// the whole state: gatherShards() copies every owner's state to every rank (call it on all ranks
// before rank 0 saves, then releaseForeign()), so a saved state is the same at any world size.
import path from 'node:path';

import { R1VError } from '../core/errors.js';
import * as is from '../core/validate.js';
import * as ops from '../ops/index.js';
import { withDirectoryLock } from '../io/dir-lock.js';
import { ensureDirectory } from '../io/files.js';
import { countNonFinite } from '../io/half.js';
import { savedModelState } from '../io/hf-checkpoint.js';
import { ProblemList } from '../io/problems.js';
import { SafetensorsFile, writeSafetensors, type SafetensorsWriteTensor } from '../io/safetensors.js';
import type { Tensor } from '../core/tensor.js';
import type { VisionLanguageModel } from '../model/model.js';
import { decays, numelOf, type Parameter } from '../model/parameters.js';

export interface AdamWOptions {
  /** Learning rate, finite, ≥ 0. Default 1e-5. */
  lr?: number;
  /** [β1, β2], each in [0, 1). Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Denominator epsilon, > 0. Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay of matrices and embeddings (never of norms, biases, layer scales). Default 0.01. */
  weightDecay?: number;
}

export interface StepOptions {
  /** Clip the gradients so their global L2 norm is at most this (finite, > 0). Default: no clipping. */
  maxGradNorm?: number;
  /**
   * When the gradient norm is NaN or infinite, update nothing (weights, moments and step counts
   * untouched) and return { skipped: true }. Default false: the update then makes the weights NaN,
   * as torch would.
   */
  skipNonFinite?: boolean;
}

export interface StepResult {
  /** The global L2 norm of the gradients before clipping. */
  gradNorm: number;
  /** How many parameters were updated (those with a gradient; sharded: those this rank owns). */
  updated: number;
  /** The update was skipped: skipNonFinite and a non-finite gradient norm. */
  skipped: boolean;
}

interface State {
  m: Tensor<'f32'>;
  v: Tensor<'f32'>;
  step: number;
}

/** What sharding needs of a communicator (lib/ops/collectives.ts Communicator is one). */
export interface ShardCollectives {
  readonly rank: number;
  readonly worldSize: number;
  broadcast(tensors: readonly Tensor[], options: { root: number }): void;
  allReduceValues(values: readonly number[], op?: 'sum' | 'max' | 'min'): Promise<Float64Array>;
}

/** ZeRO-1: which rank owns each parameter's state (the same answer on every rank). */
export interface OptimizerShard {
  comm: ShardCollectives;
  ownerOf(name: string): number;
}

const STATE_FILE = 'optimizer.safetensors';
/** Metadata key of the model weights' id (VisionLanguageModel.stateId) the state belongs to. */
const MODEL_STATE_KEY = 'r1v_model_state_id';

export interface LoadStateOptions {
  /** Receives warnings (a state saved without a model id). Default console.warn. */
  warn?: (message: string) => void;
}

/** Problems of one parameter's moments: non-finite exp_avg, negative or non-finite exp_avg_sq. */
function momentProblems(name: string, m: Float32Array, v: Float32Array, problems: ProblemList): void {
  const mBad = countNonFinite(m).count, vNonFinite = countNonFinite(v).count;
  let vNegative = 0;
  for (let i = 0; i < v.length; i++) if (v[i]! < 0) vNegative++;
  if (mBad > 0) problems.add(`${name}.exp_avg: ${mBad} non-finite value(s)`);
  if (vNonFinite > 0) problems.add(`${name}.exp_avg_sq: ${vNonFinite} non-finite value(s)`);
  if (vNegative > 0) problems.add(`${name}.exp_avg_sq: ${vNegative} negative value(s) (second moments are squares)`);
}

export class AdamW {
  readonly model: VisionLanguageModel;
  /** The learning rate of the next step (a schedule may change it between steps). */
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly #state = new Map<string, State>();
  #shard: OptimizerShard | undefined;

  constructor(model: VisionLanguageModel, options: AdamWOptions = {}) {
    const fn = 'AdamW';
    const o = is.options(options, ['lr', 'betas', 'eps', 'weightDecay'] as const, fn);
    const lr = is.optionalNumber(o.lr, 'lr', fn, 1e-5, { min: 0 });
    const betas = o.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2 || !betas.every((b) => is.isNumber(b, { min: 0, below: 1 }))) {
      is.fail(fn, `betas must be two numbers in [0, 1), got ${JSON.stringify(o.betas)}`);
    }
    const [b1, b2] = betas as [number, number];
    const eps = is.optionalNumber(o.eps, 'eps', fn, 1e-8, { above: 0 });
    const wd = is.optionalNumber(o.weightDecay, 'weightDecay', fn, 0.01, { min: 0 });
    this.model = model;
    this.lr = lr;
    this.beta1 = b1;
    this.beta2 = b2;
    this.eps = eps;
    this.weightDecay = wd;
  }

  /**
   * One update of every trainable parameter that has a gradient. The global gradient norm is
   * computed on the device over those gradients; with maxGradNorm the gradients are scaled by
   * min(1, maxGradNorm / (norm + 1e-6)) (torch's clip_grad_norm_). A non-finite norm skips
   * the update only with skipNonFinite.
   */
  async step(options: StepOptions = {}): Promise<StepResult> {
    const fn = 'AdamW.step';
    const o = is.options(options, ['maxGradNorm', 'skipNonFinite'] as const, fn);
    const max = o.maxGradNorm === undefined ? undefined : is.number(o.maxGradNorm, 'maxGradNorm', fn, { above: 0 });
    const skipNonFinite = is.optionalBoolean(o.skipNonFinite, 'skipNonFinite', fn, false);
    is.number(this.lr, 'lr', fn, { min: 0 });
    const all = this.model.parameterStates().filter((p) => p.trainable && p.grad);
    if (all.length === 0) return { gradNorm: 0, updated: 0, skipped: false };
    const params = all.filter((p) => this.#owns(p.name));
    const squares = ops.sumOfSquares(all.map((p) => p.grad!));
    const gradNorm = Math.sqrt((await squares.toArray())[0]!);
    squares.dispose();
    if (skipNonFinite && !Number.isFinite(gradNorm)) return { gradNorm, updated: 0, skipped: true };
    const gradScale = max !== undefined && gradNorm > max ? max / (gradNorm + 1e-6) : 1;
    // One native call per distinct step count (parameters that trained in different steps have different bias corrections).
    const byStep = new Map<number, ops.AdamWGroup[]>();
    for (const p of params) {
      const s = this.#stateOf(p);
      s.step += 1;
      const group: ops.AdamWGroup = {
        param: p.value, grad: p.grad!, m: s.m, v: s.v,
        ...(p.master ? { master: p.master } : {}),
        ...(decays(p.kind) ? {} : { weightDecay: 0 }),
      };
      const list = byStep.get(s.step) ?? [];
      list.push(group);
      byStep.set(s.step, list);
    }
    for (const [step, groups] of byStep) {
      ops.adamwStep(groups, { lr: this.lr, step, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay, gradScale });
    }
    if (this.#shard) this.#broadcastFromOwners(all, this.#shard);
    this.model.weightsChanged();
    await this.model.engine.synchronize();
    return { gradNorm, updated: params.length, skipped: false };
  }

  /**
   * ZeRO-1: from now on this optimizer keeps state for, and updates, only the parameters this
   * rank owns; the state of the others is freed. Every rank of the job must shard alike.
   */
  shard(shard: OptimizerShard): void {
    this.#shard = shard;
    this.releaseForeign();
  }

  /** How many f32 values of state this optimizer holds (both moments). */
  get stateElements(): number {
    let n = 0;
    for (const s of this.#state.values()) n += s.m.numel + s.v.numel;
    return n;
  }

  #owns(name: string): boolean {
    return !this.#shard || this.#shard.ownerOf(name) === this.#shard.comm.rank;
  }

  /** The updated weights (and master copies) from their owners, one broadcast per owner. */
  #broadcastFromOwners(updated: readonly Parameter[], shard: OptimizerShard): void {
    for (let root = 0; root < shard.comm.worldSize; root++) {
      const tensors = updated.filter((p) => shard.ownerOf(p.name) === root).flatMap((p) => (p.master ? [p.value, p.master] : [p.value]));
      if (tensors.length > 0) shard.comm.broadcast(tensors, { root });
    }
  }

  /**
   * Sharded: copies every owner's state to every rank (step counts agreed first), so that save()
   * writes the whole state. Call on every rank; releaseForeign() afterwards frees the copies.
   */
  async gatherShards(): Promise<void> {
    const shard = this.#shard;
    if (!shard) return;
    const params = this.model.parameterStates();
    const steps = await shard.comm.allReduceValues(params.map((p) => (this.#owns(p.name) ? this.#state.get(p.name)?.step ?? 0 : 0)), 'max');
    for (let root = 0; root < shard.comm.worldSize; root++) {
      const tensors: Tensor[] = [];
      params.forEach(({ name, shape }, i) => {
        if (shard.ownerOf(name) !== root || steps[i]! === 0) return;
        if (root !== shard.comm.rank) {
          this.#dropState(name);
          this.#state.set(name, { m: this.model.engine.zeros([...shape]), v: this.model.engine.zeros([...shape]), step: steps[i]! });
        }
        const s = this.#state.get(name)!;
        tensors.push(s.m, s.v);
      });
      if (tensors.length > 0) shard.comm.broadcast(tensors, { root });
    }
  }

  /** Sharded: frees the state of the parameters other ranks own (after gatherShards or load). */
  releaseForeign(): void {
    for (const name of [...this.#state.keys()]) if (!this.#owns(name)) this.#dropState(name);
  }

  #dropState(name: string): void {
    const s = this.#state.get(name);
    if (!s) return;
    s.m.dispose();
    s.v.dispose();
    this.#state.delete(name);
  }

  /** Drops the model's gradients (same as model.zeroGrad()). */
  zeroGrad(): void {
    this.model.zeroGrad();
  }

  #stateOf(p: Parameter): State {
    let s = this.#state.get(p.name);
    if (!s) {
      const shape = [...p.shape];
      s = { m: this.model.engine.zeros(shape), v: this.model.engine.zeros(shape), step: 0 };
      this.#state.set(p.name, s);
    }
    return s;
  }

  /**
   * Writes the state to dir/optimizer.safetensors (dir created if needed): `<param>.exp_avg` and
   * `<param>.exp_avg_sq` (f32) and, in the metadata, the hyperparameters, each parameter's step
   * count and the id of the model's current weights (so save the model and its optimizer after
   * the same step, in either order). Atomic, under the directory's save lock.
   */
  async save(dir: string): Promise<void> {
    const fn = 'AdamW.save';
    await this.model.engine.synchronize();
    const tensors: SafetensorsWriteTensor[] = [];
    const steps: Record<string, number> = {};
    for (const [name, s] of this.#state) {
      const shape = s.m.shape;
      tensors.push({ name: `${name}.exp_avg`, dtype: 'F32', shape, data: () => s.m.toArray() as Promise<Float32Array> });
      tensors.push({ name: `${name}.exp_avg_sq`, dtype: 'F32', shape, data: () => s.v.toArray() as Promise<Float32Array> });
      steps[name] = s.step;
    }
    const hyper = { lr: this.lr, betas: [this.beta1, this.beta2], eps: this.eps, weightDecay: this.weightDecay };
    const metadata = {
      format: 'r1v-adamw', steps: JSON.stringify(steps), hyperparameters: JSON.stringify(hyper), [MODEL_STATE_KEY]: this.model.stateId(),
    };
    await ensureDirectory(dir, fn);
    await withDirectoryLock(dir, fn, () => writeSafetensors(path.join(dir, STATE_FILE), tensors, metadata));
  }

  /**
   * Replaces the state with the one saved in dir. It must belong to the model files in dir (the
   * same weights id; without model files there, to the model's current weights), else
   * R1VError('IO') naming both; a state saved without an id loads with a warning. Every saved
   * parameter must exist in the model with the same shape, moments must be finite and second
   * moments non-negative, step counts non-negative integers (else R1VError('IO') listing the
   * problems). On any failure the state is unchanged. The learning rate and hyperparameters of
   * this optimizer are kept (a resumed run sets them).
   */
  async load(dir: string, options: LoadStateOptions = {}): Promise<void> {
    const fn = 'AdamW.load';
    const o = is.options(options, ['warn'] as const, fn);
    const warn = o.warn === undefined ? (m: string) => console.warn(m) : is.func<(m: string) => void>(o.warn, 'warn', fn);
    const file = path.join(dir, STATE_FILE);
    await using f = await SafetensorsFile.open(file, { inside: dir });
    const meta = f.metadata;
    let steps: Record<string, unknown>;
    try {
      steps = JSON.parse(String(meta.steps)) as Record<string, unknown>;
      if (meta.format !== 'r1v-adamw' || typeof steps !== 'object' || steps === null) throw new Error('not an r1v AdamW state');
    } catch (error) {
      throw new R1VError('IO', `${fn}: ${file} is not an r1v AdamW state (${(error as Error).message})`, { cause: error });
    }
    await this.#checkPair(dir, file, meta[MODEL_STATE_KEY], fn, warn);
    const params = new Map(this.model.parameterStates().map((p) => [p.name, p]));
    const problems = new ProblemList();
    const names = new Set(f.names());
    for (const [name, step] of Object.entries(steps)) {
      const p = params.get(name);
      if (!p) {
        problems.add(`${name}: no such parameter in the model`);
        continue;
      }
      if (!Number.isSafeInteger(step) || (step as number) < 0) problems.add(`${name}: bad step count ${String(step)}`);
      for (const suffix of ['exp_avg', 'exp_avg_sq']) {
        const key = `${name}.${suffix}`;
        if (!names.has(key)) {
          problems.add(`missing ${key}`);
          continue;
        }
        const e = f.entry(key);
        if (e.dtype !== 'F32' || numelOf(e.shape) !== numelOf(p.shape) || e.shape.length !== p.shape.length) {
          problems.add(`${key} is ${e.dtype} ${JSON.stringify(e.shape)}, the parameter is ${JSON.stringify(p.shape)}`);
        }
      }
    }
    if (problems.count > 0) throw new R1VError('IO', `${fn}: ${file} does not match the model (${problems.count} problems):${problems}`);
    const next = new Map<string, State>();
    try {
      for (const [name, step] of Object.entries(steps)) {
        const shape = [...params.get(name)!.shape];
        const m = (await f.readTensor(`${name}.exp_avg`)).data as Float32Array;
        const v = (await f.readTensor(`${name}.exp_avg_sq`)).data as Float32Array;
        momentProblems(name, m, v, problems);
        if (problems.count > 0) continue;
        next.set(name, { m: this.model.engine.tensor(m, shape), v: this.model.engine.tensor(v, shape), step: step as number });
      }
      if (problems.count > 0) throw new R1VError('IO', `${fn}: ${file} holds an invalid state (${problems.count} problems):${problems}`);
    } catch (error) {
      for (const s of next.values()) {
        s.m.dispose();
        s.v.dispose();
      }
      throw error;
    }
    this.dispose();
    for (const [k, s] of next) this.#state.set(k, s);
  }

  /** Refuses a state recorded for other weights than the model files in dir (or, without any, the model's own). */
  async #checkPair(dir: string, file: string, recorded: unknown, fn: string, warn: (message: string) => void): Promise<void> {
    if (typeof recorded !== 'string') {
      warn(`${fn}: ${file} has no record of the model weights it belongs to (saved by an older version); loading it unchecked`);
      return;
    }
    const saved = await savedModelState(dir);
    if (saved === undefined) {
      if (recorded !== this.model.stateId()) {
        throw new R1VError('IO', `${fn}: ${file} was saved with other weights than the model's current weights, and ${dir} holds no model files to check against`);
      }
    } else if (saved.id !== recorded) {
      throw new R1VError('IO', `${fn}: ${file} belongs to other model weights than ${saved.file} `
        + `(weights id ${recorded} vs ${saved.id ?? 'none recorded'}): the model and the optimizer were saved at different steps, `
        + 'e.g. a save was interrupted between the two; resume with a fresh optimizer or from a complete checkpoint');
    }
  }

  /** Frees the optimizer state. */
  dispose(): void {
    for (const name of [...this.#state.keys()]) this.#dropState(name);
  }
}

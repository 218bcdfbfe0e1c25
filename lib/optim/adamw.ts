// AdamW over a model's trainable parameters (torch.optim.AdamW semantics: decoupled weight
// decay, bias correction with a per-parameter step count, parameters without a gradient skipped),
// with optional clipping by the global gradient norm. State (exp_avg, exp_avg_sq) is f32; 16-bit
// parameters are updated through their f32 master copies.
import { promises as fsp } from 'node:fs';
import path from 'node:path';

import { R1VError } from '../core/errors.js';
import * as is from '../core/validate.js';
import * as ops from '../ops/index.js';
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
  /** How many parameters were updated (those with a gradient). */
  updated: number;
  /** The update was skipped: skipNonFinite and a non-finite gradient norm. */
  skipped: boolean;
}

interface State {
  m: Tensor<'f32'>;
  v: Tensor<'f32'>;
  step: number;
}

const STATE_FILE = 'optimizer.safetensors';

export class AdamW {
  readonly model: VisionLanguageModel;
  /** The learning rate of the next step (a schedule may change it between steps). */
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly #state = new Map<string, State>();

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
    const params = this.model.parameterStates().filter((p) => p.trainable && p.grad);
    if (params.length === 0) return { gradNorm: 0, updated: 0, skipped: false };
    const squares = ops.sumOfSquares(params.map((p) => p.grad!));
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
    await this.model.engine.synchronize();
    return { gradNorm, updated: params.length, skipped: false };
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
   * Writes the state to dir/optimizer.safetensors: `<param>.exp_avg` and `<param>.exp_avg_sq` (f32)
   * and, in the metadata, the hyperparameters and each parameter's step count. Atomic.
   */
  async save(dir: string): Promise<void> {
    await this.model.engine.synchronize();
    const tensors: SafetensorsWriteTensor[] = [];
    const steps: Record<string, number> = {};
    for (const [name, s] of this.#state) {
      const shape = s.m.shape;
      tensors.push({ name: `${name}.exp_avg`, dtype: 'F32', shape, data: () => s.m.toArray() as Promise<Float32Array> });
      tensors.push({ name: `${name}.exp_avg_sq`, dtype: 'F32', shape, data: () => s.v.toArray() as Promise<Float32Array> });
      steps[name] = s.step;
    }
    await fsp.mkdir(dir, { recursive: true });
    const hyper = { lr: this.lr, betas: [this.beta1, this.beta2], eps: this.eps, weightDecay: this.weightDecay };
    await writeSafetensors(path.join(dir, STATE_FILE), tensors, { format: 'r1v-adamw', steps: JSON.stringify(steps), hyperparameters: JSON.stringify(hyper) });
  }

  /**
   * Replaces the state with the one saved in dir. Every saved parameter must exist in the model
   * with the same shape (else R1VError('IO') listing the mismatches, and the state is unchanged).
   * The learning rate and hyperparameters of this optimizer are kept (a resumed run sets them).
   */
  async load(dir: string): Promise<void> {
    const fn = 'AdamW.load';
    const file = path.join(dir, STATE_FILE);
    await using f = await SafetensorsFile.open(file);
    const meta = f.metadata;
    let steps: Record<string, unknown>;
    try {
      steps = JSON.parse(String(meta.steps)) as Record<string, unknown>;
      if (meta.format !== 'r1v-adamw' || typeof steps !== 'object' || steps === null) throw new Error('not an r1v AdamW state');
    } catch (error) {
      throw new R1VError('IO', `${fn}: ${file} is not an r1v AdamW state (${(error as Error).message})`, { cause: error });
    }
    const params = new Map(this.model.parameterStates().map((p) => [p.name, p]));
    const problems: string[] = [];
    const names = new Set(f.names());
    for (const [name, step] of Object.entries(steps)) {
      const p = params.get(name);
      if (!p) {
        problems.push(`${name}: no such parameter in the model`);
        continue;
      }
      if (!Number.isSafeInteger(step) || (step as number) < 0) problems.push(`${name}: bad step count ${String(step)}`);
      for (const suffix of ['exp_avg', 'exp_avg_sq']) {
        const key = `${name}.${suffix}`;
        if (!names.has(key)) {
          problems.push(`missing ${key}`);
          continue;
        }
        const e = f.entry(key);
        if (e.dtype !== 'F32' || numelOf(e.shape) !== numelOf(p.shape) || e.shape.length !== p.shape.length) {
          problems.push(`${key} is ${e.dtype} ${JSON.stringify(e.shape)}, the parameter is ${JSON.stringify(p.shape)}`);
        }
      }
    }
    if (problems.length > 0) throw new R1VError('IO', `${fn}: ${file} does not match the model:\n  ${problems.join('\n  ')}`);
    const next = new Map<string, State>();
    try {
      for (const [name, step] of Object.entries(steps)) {
        const shape = [...params.get(name)!.shape];
        const m = await f.readTensor(`${name}.exp_avg`), v = await f.readTensor(`${name}.exp_avg_sq`);
        next.set(name, {
          m: this.model.engine.tensor(m.data as Float32Array, shape),
          v: this.model.engine.tensor(v.data as Float32Array, shape),
          step: step as number,
        });
      }
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

  /** Frees the optimizer state. */
  dispose(): void {
    for (const s of this.#state.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.#state.clear();
  }
}

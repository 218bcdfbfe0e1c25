// The updates: a loss over per-token arrays, turned into per-token coefficients (dL/dlogprob,
// dL/dentropy, dL/dvalue) and given to the engine's backward, micro-batch by micro-batch, then
// one optimizer step.
//
// Gradient accumulation: a loss aggregated over a mini-batch is a weighted sum over its
// micro-batches — each micro-batch's loss (aggregated over its own sequences, with the global
// maxLength) times its share: tokens/T for 'token-mean', sequences/B for the seq-mean modes — so
// the accumulated gradient equals that of one batch (up to float rounding). A non-finite loss or
// gradient norm skips the step: weights and optimizer state stay untouched, and it is reported.
//
// Data parallelism is the same sum spread over ranks: each rank's micro-batches carry their
// shares of the whole mini-batch (`parallel.whole`); the gradients are summed over the ranks in
// buckets overlapped with the last micro-batch's backward (gradient-buckets.ts), and finishStep
// sums loss and metrics and ends the gradient sum before the one optimizer step every rank takes alike.
import type { BackwardOptions } from '../model/forward-result.js';
import type { VisionLanguageModel } from '../model/model.js';
import type { StepOptions, StepResult } from '../optim/adamw.js';
import * as rl from '../rl/index.js';
import type { StageConfig } from './config.js';
import type { DataParallel } from './data-parallel.js';
import type { GradientBuckets } from './gradient-buckets.js';
import { concatField, microBatches, packSequences, responseOffsets, sequenceTokens, type RolloutSample, type Sequence } from './samples.js';

export interface UpdateResult {
  loss: number;
  gradNorm: number;
  /** The step was skipped (a non-finite loss or gradient). */
  skipped: boolean;
  /** Loss metrics averaged over the batch's tokens. */
  metrics: Record<string, number>;
}

type Aggregation = StageConfig['algorithm']['aggregation'];

/** What an update needs of an optimizer (AdamW is one; a user's own can stand in). */
export interface Optimizer {
  step(options?: StepOptions): Promise<StepResult>;
}

/** Whether every value is finite. */
function allFinite(...arrays: Float32Array[]): boolean {
  return arrays.every((a) => a.every(Number.isFinite));
}

/** The share of a micro-batch in its mini-batch's aggregated loss. */
export function microBatchShare(aggregation: Aggregation, micro: { sequences: number; tokens: number }, whole: { sequences: number; tokens: number }): number {
  return aggregation === 'token-mean' ? micro.tokens / whole.tokens : micro.sequences / whole.sequences;
}

function scaled(values: Float32Array, by: number): Float32Array {
  return values.map((x) => x * by);
}

/** Metrics weighted by tokens (token means) accumulated over micro-batches. */
class TokenMeans {
  readonly #sums = new Map<string, number>();
  add(metrics: Record<string, number | undefined>, tokenShare: number): void {
    for (const [k, v] of Object.entries(metrics)) if (v !== undefined) this.#sums.set(k, (this.#sums.get(k) ?? 0) + v * tokenShare);
  }
  result(): Record<string, number> {
    return Object.fromEntries(this.#sums);
  }
}

/** Across ranks (data parallel): what an update shares with the other ranks. */
export interface ParallelUpdate {
  dp: DataParallel;
  /** The whole mini-batch, over every rank: its sequences and response tokens (the shares' denominators). */
  whole: { sequences: number; tokens: number };
}

/**
 * Ends an update: with data parallelism, the loss and metrics are summed over the ranks (each
 * rank's are its shares of the whole) and so are the gradients (the buckets started during the
 * last backward, then the rest); then an optimizer step unless the loss or the gradient norm is
 * non-finite (decided alike on every rank).
 */
async function finishStep(model: VisionLanguageModel, optimizer: Optimizer, local: { loss: number; metrics: Record<string, number> },
  maxGradNorm: number | undefined, parallel: ParallelUpdate | undefined, buckets: GradientBuckets | undefined): Promise<StepResult & { loss: number; metrics: Record<string, number> }> {
  let { loss, metrics } = local;
  if (parallel) {
    const agreed = buckets ? await buckets.agree(Number.isFinite(loss)) : false;
    [loss] = await parallel.dp.sum([loss]) as [number];
    metrics = await parallel.dp.sumRecords(metrics);
    if (agreed) await buckets!.finish();
  }
  if (!Number.isFinite(loss)) {
    model.zeroGrad();
    return { gradNorm: NaN, updated: 0, skipped: true, loss, metrics };
  }
  const step = await optimizer.step({ ...(maxGradNorm !== undefined ? { maxGradNorm } : {}), skipNonFinite: true });
  model.zeroGrad();
  return { ...step, loss, metrics };
}

/**
 * One micro-batch of an update: forward, loss, and backward with `backwardOptions()` (asked only
 * once the micro-batch's loss is known finite); false stops the update (a non-finite loss).
 */
type MicroStep<T> = (micro: T[], backwardOptions: () => Promise<BackwardOptions | undefined>) => Promise<boolean>;

/**
 * The frame of every update: zeroGrad, the micro-batches in turn, then one step (finishStep). With
 * data parallelism the update's gradient buckets live around it: the last micro-batch's backward
 * reports its finished gradients to them (their all-reduce overlaps the rest of backward) once
 * every rank has reached its last backward with finite losses.
 */
async function runUpdate<T extends Sequence>(model: VisionLanguageModel, optimizer: Optimizer, items: readonly T[],
  o: { microBatchTokens: number; maxGradNorm?: number | undefined; parallel?: ParallelUpdate | undefined },
  microStep: MicroStep<T>, local: () => { loss: number; metrics: Record<string, number> }): Promise<UpdateResult> {
  model.zeroGrad();
  const buckets = o.parallel?.dp.gradientBuckets(model);
  try {
    const micros = microBatches(items, sequenceTokens, o.microBatchTokens);
    for (const [i, micro] of micros.entries()) {
      const last = i === micros.length - 1;
      if (!(await microStep(micro, async () => (buckets && last ? buckets.lastBackward() : undefined)))) break;
    }
    const step = await finishStep(model, optimizer, local(), o.maxGradNorm, o.parallel, buckets);
    return { loss: step.loss, gradNorm: step.gradNorm, skipped: step.skipped, metrics: step.metrics };
  } finally {
    buckets?.dispose();
  }
}

export interface PolicyUpdateOptions {
  algorithm: StageConfig['algorithm'];
  microBatchTokens: number;
  /** Temperature of the logprobs (the rollout's). */
  temperature: number;
  maxGradNorm?: number | undefined;
  /** maxLength of 'seq-mean-token-sum-norm' (the generation budget). */
  maxLength: number;
  /** Reference model: its logprobs are computed here for samples that lack refLogprobs (KL on). */
  reference?: VisionLanguageModel | undefined;
  /** Data parallelism: these samples are this rank's part of `parallel.whole`. */
  parallel?: ParallelUpdate | undefined;
}

/**
 * One optimizer step of the policy loss over a mini-batch of samples (each with advantages; with
 * oldLogprobs when the policy already changed since the rollout, else the current logprobs are
 * the old ones: on-policy, ratio 1).
 */
export async function policyUpdate(model: VisionLanguageModel, optimizer: Optimizer, samples: readonly RolloutSample[], o: PolicyUpdateOptions): Promise<UpdateResult> {
  const a = o.algorithm;
  const whole = o.parallel?.whole ?? { sequences: samples.length, tokens: samples.reduce((n, s) => n + s.responseIds.length, 0) };
  const means = new TokenMeans();
  let loss = 0;
  return runUpdate(model, optimizer, samples, o, async (micro, backwardOptions) => {
    const batch = packSequences(micro);
    if (a.kl && micro.some((s) => !s.refLogprobs)) {
      const ref = await o.reference!.tokenStats(batch, { temperature: o.temperature });
      const cu = responseOffsets(micro);
      micro.forEach((s, i) => (s.refLogprobs = ref.logprobs.slice(cu[i]!, cu[i + 1]!)));
    }
    const f = await model.forward(batch, { grad: true, temperature: o.temperature });
    const cuSeqlens = responseOffsets(micro);
    if (!allFinite(f.logprobs, f.entropy)) {
      f.dispose();
      loss = NaN;
      return false;
    }
    const r = rl.policyLoss({
      kind: a.loss, logprobs: f.logprobs, oldLogprobs: micro.every((s) => s.oldLogprobs) ? concatField(micro, (s) => s.oldLogprobs) : f.logprobs,
      advantages: concatField(micro, (s) => s.advantages), cuSeqlens, aggregation: a.aggregation, maxLength: o.maxLength,
      ...(a.loss !== 'pg' ? { clipLow: a.clipLow, clipHigh: a.clipHigh, ...(a.dualClip !== undefined ? { dualClip: a.dualClip } : {}) } : {}),
      ...(a.kl ? { refLogprobs: concatField(micro, (s) => s.refLogprobs), kl: a.kl } : {}),
      ...(a.entropyCoef > 0 ? { entropy: f.entropy, entropyCoef: a.entropyCoef } : {}),
    });
    const part = { sequences: micro.length, tokens: cuSeqlens[cuSeqlens.length - 1]! };
    const share = microBatchShare(a.aggregation, part, whole);
    loss += r.loss * share;
    means.add({ ...r.metrics, tokenEntropy: f.entropy.reduce((x, y) => x + y, 0) / Math.max(1, part.tokens) }, part.tokens / whole.tokens);
    if (!Number.isFinite(r.loss)) {
      f.dispose();
      return false;
    }
    await f.backward({ dLogprobs: scaled(r.dLogprobs, share), dEntropy: scaled(r.dEntropy, share) }, await backwardOptions());
    return true;
  }, () => ({ loss, metrics: means.result() }));
}

export interface CriticUpdateOptions {
  microBatchTokens: number;
  clip: number;
  coef: number;
  aggregation: Aggregation;
  maxGradNorm?: number | undefined;
  /** Data parallelism: these samples are this rank's part of `parallel.whole`. */
  parallel?: ParallelUpdate | undefined;
}

/** One optimizer step of the clipped value loss over a mini-batch (samples with values and returns). */
export async function criticUpdate(critic: VisionLanguageModel, optimizer: Optimizer, samples: readonly RolloutSample[], o: CriticUpdateOptions): Promise<UpdateResult> {
  const whole = o.parallel?.whole ?? { sequences: samples.length, tokens: samples.reduce((n, s) => n + s.responseIds.length, 0) };
  const means = new TokenMeans();
  let loss = 0;
  return runUpdate(critic, optimizer, samples, o, async (micro, backwardOptions) => {
    const f = await critic.forward(packSequences(micro), { grad: true, tokenStats: false });
    const cuSeqlens = responseOffsets(micro);
    if (!allFinite(f.values!)) {
      f.dispose();
      loss = NaN;
      return false;
    }
    const r = rl.valueLoss({
      values: f.values!, oldValues: concatField(micro, (s) => s.values), returns: concatField(micro, (s) => s.returns),
      cuSeqlens, clip: o.clip, aggregation: o.aggregation,
    });
    const part = { sequences: micro.length, tokens: cuSeqlens[cuSeqlens.length - 1]! };
    const share = microBatchShare(o.aggregation, part, whole) * o.coef;
    loss += r.loss * share;
    means.add(r.metrics, part.tokens / whole.tokens);
    if (!Number.isFinite(r.loss)) {
      f.dispose();
      return false;
    }
    await f.backward({ dValues: scaled(r.dValues, share) }, await backwardOptions());
    return true;
  }, () => ({ loss, metrics: means.result() }));
}

/**
 * One optimizer step of supervised fine-tuning: the mean negative log-likelihood of every
 * response token of the batch (token-mean cross-entropy), micro-batched.
 */
export async function sftUpdate(model: VisionLanguageModel, optimizer: Optimizer, sequences: readonly Sequence[],
  o: { microBatchTokens: number; maxGradNorm?: number | undefined; parallel?: ParallelUpdate | undefined }): Promise<UpdateResult> {
  const tokens = o.parallel?.whole.tokens ?? sequences.reduce((n, s) => n + s.responseIds.length, 0);
  let loss = 0;
  const r = await runUpdate(model, optimizer, sequences, o, async (micro, backwardOptions) => {
    const f = await model.forward(packSequences(micro), { grad: true });
    const nll = -f.logprobs.reduce((x, y) => x + y, 0) / tokens;
    loss += nll;
    if (!Number.isFinite(nll)) {
      f.dispose();
      return false;
    }
    await f.backward({ dLogprobs: new Float32Array(f.logprobs.length).fill(-1 / tokens) }, await backwardOptions());
    return true;
  }, () => ({ loss, metrics: {} }));
  return { ...r, metrics: { tokens } };
}

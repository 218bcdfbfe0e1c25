// Advantage estimators, as named entries of the `advantages` registry.
//
// Conventions: outcome estimators (grpo, rloo, reinforcePlusPlus) take one scalar reward per
// sample, r[i], and return one advantage per sample (Float32Array); expandToTokens repeats a
// sample's value over its tokens for rl.policyLoss. A group is a consecutive run of groupSize
// samples (the n rollouts of one prompt): group g holds samples [g·n, (g+1)·n); rewards.length
// must be a multiple of groupSize (else SHAPE). Group statistics come from `groupStatistics`
// only: mean and unbiased variance (divisor n − 1), the mean computed around the group's first value
// so that a group of equal rewards has a mean exactly equal to them (its centred rewards are
// exactly 0, hence its advantages are 0). A group of one follows verl: baseline 0 (and std 1 for
// grpo). The token-level estimator gae works per token on packed sequences (cuSeqlens).
// Everything is computed in float64.
import { fail, number, type NumberRule, optionalBoolean, optionalNumber, options } from '../core/validate.js';
import { sameLengthArrays, sequenceOffsets } from './inputs.js';

/** Per-group mean and unbiased variance of `values` in groups of `groupSize` (variance 0 for a group of one). */
export function groupStatistics(values: ArrayLike<number>, groupSize: number): { mean: Float64Array; variance: Float64Array } {
  const groups = values.length / groupSize;
  const mean = new Float64Array(groups);
  const variance = new Float64Array(groups);
  for (let g = 0; g < groups; g++) {
    const start = g * groupSize;
    const pivot = values[start]!;
    let shift = 0;
    for (let i = start; i < start + groupSize; i++) shift += values[i]! - pivot;
    mean[g] = pivot + shift / groupSize;
    let squares = 0;
    for (let i = start; i < start + groupSize; i++) squares += (values[i]! - mean[g]!) ** 2;
    variance[g] = groupSize > 1 ? squares / (groupSize - 1) : 0;
  }
  return { mean, variance };
}

/** The rewards of an outcome estimator and its groupSize, checked. */
function readGroups(where: string, rewards: unknown, groupSize: unknown): { rewards: ArrayLike<number>; groupSize: number } {
  const values = sameLengthArrays(where, { rewards }).rewards;
  const size = number(groupSize, 'groupSize', where, { integer: true, min: 1 });
  if (values.length % size !== 0) {
    fail(where, `rewards has ${values.length} entries, not a multiple of groupSize ${size}`, 'SHAPE');
  }
  return { rewards: values, groupSize: size };
}

/** r − group mean per sample (verl's baseline 0 for a group of one), and the group variances. */
function centredOnGroup(rewards: ArrayLike<number>, groupSize: number): { centred: Float64Array; variance: Float64Array } {
  const { mean, variance } = groupStatistics(rewards, groupSize);
  const centred = new Float64Array(rewards.length);
  for (let i = 0; i < rewards.length; i++) centred[i] = groupSize === 1 ? rewards[i]! : rewards[i]! - mean[Math.floor(i / groupSize)]!;
  return { centred, variance };
}

export interface GrpoOptions {
  groupSize: number;
  /** Divide by the group's std (GRPO); false: r − mean only (Dr. GRPO). Default true. */
  scaleByStd?: boolean;
  /** Added to the std (> 0). Default 1e-6. */
  eps?: number;
}

/**
 * GRPO: A_i = (r_i − mean_g) / (std_g + eps), std unbiased (torch.std, as verl); scaleByStd
 * false gives Dr. GRPO's A_i = r_i − mean_g. A group of one: mean 0, std 1 (verl), so
 * A = r / (1 + eps), or r.
 */
export function grpo(rewards: ArrayLike<number>, options_: GrpoOptions): Float32Array {
  const where = 'rl.advantages.grpo';
  const opts = options(options_, ['groupSize', 'scaleByStd', 'eps'], where);
  const groups = readGroups(where, rewards, opts.groupSize);
  const n = groups.groupSize;
  const scaleByStd = optionalBoolean(opts.scaleByStd, 'scaleByStd', where, true);
  const eps = optionalNumber(opts.eps, 'eps', where, 1e-6, { above: 0 });
  const { centred, variance } = centredOnGroup(groups.rewards, n);
  if (!scaleByStd) return Float32Array.from(centred);
  return Float32Array.from(centred, (c, i) => c / ((n === 1 ? 1 : Math.sqrt(variance[Math.floor(i / n)]!)) + eps));
}

/**
 * RLOO: A_i = r_i − mean_{j≠i} r_j = n/(n − 1) · (r_i − mean_g) for a group of n. A group of
 * one has no other sample: baseline 0, A = r (as verl).
 */
export function rloo(rewards: ArrayLike<number>, options_: { groupSize: number }): Float32Array {
  const where = 'rl.advantages.rloo';
  const groups = readGroups(where, rewards, options(options_, ['groupSize'], where).groupSize);
  const n = groups.groupSize;
  const { centred } = centredOnGroup(groups.rewards, n);
  return Float32Array.from(centred, (c) => (n === 1 ? c : (c * n) / (n - 1)));
}

/**
 * REINFORCE++: the batch-normalised reward A_i = (x_i − mean(x)) / sqrt(var(x) + 1e-8), mean and
 * unbiased var over the whole batch; x = r, or with groupSize (REINFORCE++-baseline) x = r − group
 * mean (0 for a group of one). verl whitens over tokens (a long response weighs more); r1v over
 * samples. A batch of one has A = 0 (x − mean = 0, its variance taken as 0) where verl raises.
 */
export function reinforcePlusPlus(rewards: ArrayLike<number>, options_: { groupSize?: number } = {}): Float32Array {
  const where = 'rl.advantages.reinforcePlusPlus';
  const { groupSize } = options(options_, ['groupSize'], where);
  let x: ArrayLike<number>;
  if (groupSize === undefined) x = sameLengthArrays(where, { rewards }).rewards;
  else {
    const groups = readGroups(where, rewards, groupSize);
    x = centredOnGroup(groups.rewards, groups.groupSize).centred;
  }
  if (x.length === 0) return new Float32Array(0);
  const { mean, variance } = groupStatistics(x, x.length);
  const scale = Math.sqrt(variance[0]! + 1e-8);
  return Float32Array.from(x, (v) => (v - mean[0]!) / scale);
}

export interface GaeOptions {
  /** Discount γ ∈ [0, 1]. Default 1. */
  gamma?: number;
  /** GAE λ ∈ [0, 1]. Default 1. */
  lambda?: number;
}

/**
 * GAE per token of each sequence: δ_t = r_t + γ V_{t+1} − V_t (V past a sequence's last token is
 * 0), A_t = δ_t + γλ A_{t+1} (A past the end is 0), returns_t = A_t + V_t. verl then whitens the
 * advantages over the batch; r1v returns them as they are (whiten in the trainer if wanted).
 */
export function gae(
  tokenRewards: ArrayLike<number>, values: ArrayLike<number>, cuSeqlens: Int32Array, options_: GaeOptions = {},
): { advantages: Float32Array; returns: Float32Array } {
  const where = 'rl.advantages.gae';
  const opts = options(options_, ['gamma', 'lambda'], where);
  const unit: NumberRule = { min: 0, max: 1 };
  const gamma = optionalNumber(opts.gamma, 'gamma', where, 1, unit);
  const lambda = optionalNumber(opts.lambda, 'lambda', where, 1, unit);
  const arrays = sameLengthArrays(where, { tokenRewards, values });
  const cu = sequenceOffsets(cuSeqlens, arrays.tokenRewards.length, where);
  const advantages = new Float32Array(arrays.values.length);
  const returns = new Float32Array(arrays.values.length);
  for (let b = 0; b + 1 < cu.length; b++) {
    let nextValue = 0;
    let nextAdvantage = 0;
    for (let t = cu[b + 1]! - 1; t >= cu[b]!; t--) {
      const value = arrays.values[t]!;
      const delta = arrays.tokenRewards[t]! + gamma * nextValue - value;
      nextAdvantage = delta + gamma * lambda * nextAdvantage;
      nextValue = value;
      advantages[t] = nextAdvantage;
      returns[t] = nextAdvantage + value;
    }
  }
  return { advantages, returns };
}

/** A sequence's scalar repeated over its tokens: out[t] = perSequence[b] for t in sequence b. */
export function expandToTokens(perSequence: ArrayLike<number>, cuSeqlens: Int32Array): Float32Array {
  const where = 'rl.expandToTokens';
  const cu = sequenceOffsets(cuSeqlens, undefined, where);
  const values = sameLengthArrays(where, { perSequence }).perSequence;
  if (values.length !== cu.length - 1) {
    fail(where, `perSequence has ${values.length} entries but cuSeqlens describes ${cu.length - 1} sequences`, 'SHAPE');
  }
  const out = new Float32Array(cu[cu.length - 1]!);
  for (let b = 0; b < values.length; b++) out.fill(values[b]!, cu[b]!, cu[b + 1]!);
  return out;
}

/** The outcome estimators (rewards per sample → advantages per sample) and GAE. */
export const advantages = { grpo, rloo, reinforcePlusPlus, gae } as const;

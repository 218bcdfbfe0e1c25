// The policy loss: a per-token loss of a named kind (the `policyLossKinds` registry: ppo, gspo,
// pg), aggregated by one of the modes of aggregate.ts, plus an optional KL term and entropy
// bonus, with the exact gradients the engine's backward takes: dLogprobs = ∂loss/∂logprobs and
// dEntropy = ∂loss/∂entropy per token.
//
// Conventions: per-token arrays (length T) packed by cuSeqlens as in inputs.ts; A_t is the
// advantage of token t (a sequence's scalar repeated over its tokens, or per-token GAE values);
// w_t are the aggregation weights (agg(ℓ) = Σ_t w_t ℓ_t). Everything is float64 until the
// Float32Array gradients. Metrics are token means over all T tokens (0 when T = 0), except
// `entropy`, which is aggregated like the loss. verl clamps log-ratios (ppo: logp − old to
// [−20, 20], gspo: to ≤ 10) for stability; r1v does not, so the loss and its gradient follow the
// formulas for every input.
import { fail, number, oneOf, optionalNumber, optionalOneOf, options } from '../core/validate.js';
import { type AggregationOptions, readAggregation, tokenFraction, tokenMean, weightedSum } from './aggregate.js';
import { sameLengthArrays, sequenceOffsets } from './inputs.js';
import { KL_KINDS, type KlKind, klEstimators } from './kl.js';

export const POLICY_LOSS_KINDS = ['ppo', 'gspo', 'pg'] as const;
export type PolicyLossKind = (typeof POLICY_LOSS_KINDS)[number];

/** The clip range of the ratio kinds: clip(ρ, 1 − low, 1 + high), and the dual-clip bound c (> 1). */
export interface ClipRange {
  low: number;
  high: number;
  dual: number | undefined;
}

/** What a kind reads. */
export interface PolicyTerms {
  logprobs: ArrayLike<number>;
  oldLogprobs: ArrayLike<number>;
  advantages: ArrayLike<number>;
  cuSeqlens: Int32Array;
  clip: ClipRange;
}

/**
 * What a kind gives back: ℓ_t per token, the ratio its clip compared per token (undefined for a
 * kind without one), and ∂(Σ_t w_t ℓ_t)/∂logp_t.
 */
export interface PerTokenPolicyLoss {
  losses: Float64Array;
  ratios: Float64Array | undefined;
  dLogprobs: Float64Array;
}

/** One entry of the registry: the per-token loss of a kind and its exact gradient under weights w. */
export type PolicyLossKindFn = (terms: PolicyTerms, weights: Float64Array) => PerTokenPolicyLoss;

/**
 * The clipped surrogate of each token at ratio ρ and advantage A:
 *   ℓ = max(−A ρ, −A clip(ρ, 1 − low, 1 + high));  with dual clip c, for A < 0: ℓ = min(ℓ, −A c),
 * and dℓ/dρ: −A on the unclipped branch, 0 where a clip is active. Ties: the clipped term is
 * taken only when strictly larger than −A ρ, and the dual bound only when strictly smaller than
 * ℓ, so at ρ exactly on a clip boundary the gradient is the unclipped one, −A.
 */
function clippedSurrogate(
  ratios: Float64Array, advantages: ArrayLike<number>, clip: ClipRange,
): { losses: Float64Array; dRatios: Float64Array } {
  const losses = new Float64Array(ratios.length);
  const dRatios = new Float64Array(ratios.length);
  for (let t = 0; t < ratios.length; t++) {
    const a = advantages[t]!;
    const ratio = ratios[t]!;
    const unclipped = -a * ratio;
    const clipped = -a * Math.min(Math.max(ratio, 1 - clip.low), 1 + clip.high);
    let loss = unclipped;
    let dRatio = -a;
    if (clipped > unclipped) [loss, dRatio] = [clipped, 0];
    if (clip.dual !== undefined && a < 0 && -a * clip.dual < loss) [loss, dRatio] = [-a * clip.dual, 0];
    losses[t] = loss;
    dRatios[t] = dRatio;
  }
  return { losses, dRatios };
}

export const policyLossKinds: Record<PolicyLossKind, PolicyLossKindFn> = {
  /**
   * ppo: ρ_t = exp(logp_t − old_t), ℓ_t = clipped surrogate at ρ_t (DAPO's clip-higher when
   * high ≠ low; dual-clip PPO with c). ∂loss/∂logp_t = w_t · dℓ_t/dρ · ρ_t.
   */
  ppo({ logprobs, oldLogprobs, advantages, clip }, weights) {
    const ratios = Float64Array.from(weights, (_w, t) => Math.exp(logprobs[t]! - oldLogprobs[t]!));
    const { losses, dRatios } = clippedSurrogate(ratios, advantages, clip);
    const dLogprobs = Float64Array.from(weights, (w, t) => w * dRatios[t]! * ratios[t]!);
    return { losses, ratios, dLogprobs };
  },

  /**
   * gspo: one ratio per sequence, s_b = exp((1/L_b) Σ_{u∈b} (logp_u − old_u)), used for every
   * token of b: ℓ_t = clipped surrogate at s_b. Since ∂s_b/∂logp_u = s_b / L_b,
   * ∂loss/∂logp_u = (s_b / L_b) Σ_{t∈b} w_t dℓ_t/ds. verl's gspo instead differentiates
   * sg[s_b] · π_t / sg[π_t] (each token's own term only); the two agree when A is constant over a
   * sequence and the aggregation is seq-mean-token-mean, and r1v keeps the exact derivative of
   * its loss in every case.
   */
  gspo({ logprobs, oldLogprobs, advantages, cuSeqlens, clip }, weights) {
    const ratios = new Float64Array(weights.length);
    for (let b = 0; b + 1 < cuSeqlens.length; b++) {
      const [start, end] = [cuSeqlens[b]!, cuSeqlens[b + 1]!];
      let logRatioSum = 0;
      for (let t = start; t < end; t++) logRatioSum += logprobs[t]! - oldLogprobs[t]!;
      if (end > start) ratios.fill(Math.exp(logRatioSum / (end - start)), start, end);
    }
    const { losses, dRatios } = clippedSurrogate(ratios, advantages, clip);
    const dLogprobs = new Float64Array(weights.length);
    for (let b = 0; b + 1 < cuSeqlens.length; b++) {
      const [start, end] = [cuSeqlens[b]!, cuSeqlens[b + 1]!];
      let dRatio = 0;
      for (let t = start; t < end; t++) dRatio += weights[t]! * dRatios[t]!;
      if (end > start) dLogprobs.fill((dRatio * ratios[start]!) / (end - start), start, end);
    }
    return { losses, ratios, dLogprobs };
  },

  /** pg (vanilla policy gradient, REINFORCE): ℓ_t = −A_t logp_t; ∂loss/∂logp_t = −w_t A_t. No ratio, no clip. */
  pg({ logprobs, advantages }, weights) {
    const losses = Float64Array.from(weights, (_w, t) => -advantages[t]! * logprobs[t]!);
    const dLogprobs = Float64Array.from(weights, (w, t) => -w * advantages[t]!);
    return { losses, ratios: undefined, dLogprobs };
  },
};

export const KL_MODES = ['loss', 'reward'] as const;

/** The KL term against a reference policy. */
export interface KlOptions {
  kind: KlKind;
  /** β ≥ 0. */
  coef: number;
  /**
   * 'loss' (default): loss += β · agg(KL_t). 'reward': the loss is left alone (the trainer
   * subtracts β · rl.klPenalty per token from the rewards) and only the metric is reported.
   */
  mode?: (typeof KL_MODES)[number];
}

export interface PolicyLossInput extends AggregationOptions {
  kind: PolicyLossKind;
  logprobs: ArrayLike<number>;
  oldLogprobs: ArrayLike<number>;
  advantages: ArrayLike<number>;
  cuSeqlens: Int32Array;
  /** ε_low ∈ [0, 1): the ratio's lower bound is 1 − ε_low. Default 0.2. Not read by 'pg'. */
  clipLow?: number;
  /** ε_high ≥ 0: the ratio's upper bound is 1 + ε_high (DAPO's clip-higher when > ε_low). Default 0.2. Not read by 'pg'. */
  clipHigh?: number;
  /** Dual-clip c > 1 (e.g. 3): for A < 0 the per-token loss is min(ℓ, −A c). Not with 'pg'. */
  dualClip?: number;
  /** Reference-policy logprobs per token, for `kl`. */
  refLogprobs?: ArrayLike<number>;
  kl?: KlOptions;
  /** Entropy per token; needed when entropyCoef ≠ 0, reported as a metric when given. */
  entropy?: ArrayLike<number>;
  /** loss −= entropyCoef · agg(H). Default 0. */
  entropyCoef?: number;
}

export interface PolicyLossMetrics {
  /** Fraction of tokens with ρ < 1 − ε_low and A < 0 (the low clip active; TRL's low_clip). */
  clipFracLow: number;
  /** Fraction of tokens with ρ > 1 + ε_high and A > 0 (the high clip active; TRL's high_clip). */
  clipFracHigh: number;
  /** Mean over tokens of old − logp (verl's ppo_kl). */
  approxKl: number;
  /** Mean over tokens of the KL estimator, when kl is given. */
  kl?: number;
  /** agg(H), when entropy is given. */
  entropy?: number;
}

export interface PolicyLossResult {
  loss: number;
  dLogprobs: Float32Array;
  dEntropy: Float32Array;
  metrics: PolicyLossMetrics;
}

const INPUT_KEYS = [
  'kind', 'logprobs', 'oldLogprobs', 'advantages', 'cuSeqlens', 'clipLow', 'clipHigh', 'dualClip',
  'refLogprobs', 'kl', 'entropy', 'entropyCoef', 'aggregation', 'maxLength',
] as const;

/**
 * loss = agg(ℓ) + [kl.mode 'loss'] β · agg(KL) − entropyCoef · agg(H), with ℓ of `kind` (see
 * policyLossKinds), and its exact gradients in logprobs and entropy.
 */
export function policyLoss(input: PolicyLossInput): PolicyLossResult {
  const where = 'rl.policyLoss';
  const opts = options(input, INPUT_KEYS, where);
  const kind = oneOf(opts.kind, 'kind', where, POLICY_LOSS_KINDS);
  const arrays = sameLengthArrays(
    where,
    { logprobs: opts.logprobs, oldLogprobs: opts.oldLogprobs, advantages: opts.advantages },
    { refLogprobs: opts.refLogprobs, entropy: opts.entropy },
  );
  const tokens = arrays.logprobs.length;
  const cuSeqlens = sequenceOffsets(opts.cuSeqlens, tokens, where);
  const clip: ClipRange = {
    low: optionalNumber(opts.clipLow, 'clipLow', where, 0.2, { min: 0, below: 1 }),
    high: optionalNumber(opts.clipHigh, 'clipHigh', where, 0.2, { min: 0 }),
    dual: opts.dualClip === undefined ? undefined : number(opts.dualClip, 'dualClip', where, { above: 1 }),
  };
  if (kind === 'pg' && clip.dual !== undefined) fail(where, "dualClip applies to the ratio kinds 'ppo' and 'gspo', not 'pg'");
  const kl = readKl(opts.kl, arrays.refLogprobs, where);
  const entropyCoef = optionalNumber(opts.entropyCoef, 'entropyCoef', where, 0);
  if (entropyCoef !== 0 && opts.entropy === undefined) fail(where, `entropyCoef is ${entropyCoef} but no entropy was given`);
  const weights = readAggregation(opts, cuSeqlens, where, 'seq-mean-token-mean');

  const terms: PolicyTerms = { logprobs: arrays.logprobs, oldLogprobs: arrays.oldLogprobs, advantages: arrays.advantages, cuSeqlens, clip };
  const { losses, ratios, dLogprobs } = policyLossKinds[kind](terms, weights);
  let loss = weightedSum(losses, weights);
  const metrics: PolicyLossMetrics = {
    ...clipFractions(ratios, arrays.advantages, clip, tokens),
    approxKl: tokenMean(Float64Array.from(weights, (_w, t) => arrays.oldLogprobs[t]! - arrays.logprobs[t]!)),
  };

  if (kl !== undefined) {
    const estimator = klEstimators[kl.kind];
    const differences = Float64Array.from(weights, (_w, t) => arrays.logprobs[t]! - kl.refLogprobs[t]!);
    const values = differences.map((d) => estimator.value(d));
    metrics.kl = tokenMean(values);
    if (kl.mode === 'loss') {
      loss += kl.coef * weightedSum(values, weights);
      for (let t = 0; t < tokens; t++) dLogprobs[t] = dLogprobs[t]! + kl.coef * weights[t]! * estimator.dLogprob(differences[t]!);
    }
  }

  const dEntropy = new Float32Array(tokens);
  if (arrays.entropy !== undefined) {
    metrics.entropy = weightedSum(arrays.entropy, weights);
    loss -= entropyCoef * metrics.entropy;
    for (let t = 0; t < tokens; t++) dEntropy[t] = -entropyCoef * weights[t]!;
  }
  return { loss, dLogprobs: Float32Array.from(dLogprobs), dEntropy, metrics };
}

/** The checked kl option with its reference logprobs (undefined when absent); the two come together. */
function readKl(
  value: unknown, refLogprobs: ArrayLike<number> | undefined, where: string,
): (Required<KlOptions> & { refLogprobs: ArrayLike<number> }) | undefined {
  if (value === undefined) {
    if (refLogprobs !== undefined) fail(where, 'refLogprobs was given without kl (say which estimator and coef)');
    return undefined;
  }
  const kl = options(value, ['kind', 'coef', 'mode'], `${where}: kl`);
  if (refLogprobs === undefined) fail(where, 'kl needs refLogprobs');
  return {
    refLogprobs,
    kind: oneOf(kl.kind, 'kl.kind', where, KL_KINDS),
    coef: number(kl.coef, 'kl.coef', where, { min: 0 }),
    mode: optionalOneOf(kl.mode, 'kl.mode', where, KL_MODES, 'loss'),
  };
}

/** TRL's clip fractions over the T tokens; 0 for a kind without a ratio. */
function clipFractions(
  ratios: Float64Array | undefined, advantages: ArrayLike<number>, clip: ClipRange, tokens: number,
): { clipFracLow: number; clipFracHigh: number } {
  let low = 0;
  let high = 0;
  for (let t = 0; ratios !== undefined && t < tokens; t++) {
    if (ratios[t]! < 1 - clip.low && advantages[t]! < 0) low++;
    if (ratios[t]! > 1 + clip.high && advantages[t]! > 0) high++;
  }
  return { clipFracLow: tokenFraction(low, tokens), clipFracHigh: tokenFraction(high, tokens) };
}

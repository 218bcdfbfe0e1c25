// Aggregation of per-token losses ℓ_t into one scalar (verl's agg_loss modes), shared by every
// loss in lib/rl.
//
// Conventions: T tokens packed as sequences b = 0..B−1, sequence b holding tokens
// [cu[b], cu[b + 1]) of length L_b. B' is the number of sequences with L_b > 0: a sequence with
// no tokens contributes nothing and is not counted in any per-sequence denominator. Every mode
// is linear in ℓ, agg(ℓ) = Σ_t w_t ℓ_t, with weights that depend only on the lengths, so the
// exact derivative of a mode is ∂agg/∂ℓ_t = w_t: `aggregationWeights` returns that w, and every
// loss computes its value as Σ w_t ℓ_t and its gradient by the chain rule through w. An
// aggregate over no tokens (T = 0) is 0.
import { number, optionalOneOf } from '../core/validate.js';

export const AGGREGATIONS = ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

/** Options of the losses that say how per-token terms are aggregated. */
export interface AggregationOptions {
  aggregation?: Aggregation;
  /** Normaliser of 'seq-mean-token-sum-norm' (a fixed response budget). Default: the longest sequence. */
  maxLength?: number;
}

/** What a mode's weight may depend on besides the length of the token's own sequence. */
interface BatchLengths {
  /** T. */
  tokens: number;
  /** B': the sequences with at least one token. */
  sequences: number;
  /** The -norm normaliser: the option maxLength, else max_b L_b. */
  maxLength: number;
}

/** w_t of each mode, for a token of a sequence of length L. */
export const aggregations: Record<Aggregation, (length: number, batch: BatchLengths) => number> = {
  /** token-mean: Σ_t ℓ_t / T. */
  'token-mean': (_length, batch) => 1 / batch.tokens,
  /** seq-mean-token-mean: (1/B') Σ_b (1/L_b) Σ_{t∈b} ℓ_t. */
  'seq-mean-token-mean': (length, batch) => 1 / (batch.sequences * length),
  /** seq-mean-token-sum: (1/B') Σ_b Σ_{t∈b} ℓ_t. */
  'seq-mean-token-sum': (_length, batch) => 1 / batch.sequences,
  /**
   * seq-mean-token-sum-norm (Dr. GRPO's 1/G · Σ_i Σ_t ℓ / MAX_TOKENS): Σ_t ℓ_t / (B' · maxLength).
   * verl's mode divides the token sum by a constant alone (the padded response length); r1v
   * divides by sequences × maxLength, so the loss scale does not grow with the batch.
   */
  'seq-mean-token-sum-norm': (_length, batch) => 1 / (batch.sequences * batch.maxLength),
};

/** The per-token weights w (∂agg/∂ℓ_t) of `aggregation` over the sequences of cuSeqlens. */
export function aggregationWeights(cuSeqlens: Int32Array, aggregation: Aggregation, maxLength?: number): Float64Array {
  const sequenceCount = cuSeqlens.length - 1;
  const tokens = cuSeqlens[sequenceCount]!;
  let sequences = 0;
  let longest = 0;
  for (let b = 0; b < sequenceCount; b++) {
    const length = cuSeqlens[b + 1]! - cuSeqlens[b]!;
    if (length > 0) sequences++;
    longest = Math.max(longest, length);
  }
  const batch: BatchLengths = { tokens, sequences, maxLength: maxLength ?? longest };
  const weightOf = aggregations[aggregation];
  const weights = new Float64Array(tokens);
  for (let b = 0; b < sequenceCount; b++) {
    const length = cuSeqlens[b + 1]! - cuSeqlens[b]!;
    if (length > 0) weights.fill(weightOf(length, batch), cuSeqlens[b]!, cuSeqlens[b + 1]!);
  }
  return weights;
}

/** Σ_t w_t v_t: the aggregate of per-token values v under weights w. */
export function weightedSum(values: ArrayLike<number>, weights: Float64Array): number {
  let sum = 0;
  for (let t = 0; t < weights.length; t++) sum += weights[t]! * values[t]!;
  return sum;
}

/** count / T, the token mean of an indicator; 0 when there are no tokens. */
export function tokenFraction(count: number, tokens: number): number {
  return tokens === 0 ? 0 : count / tokens;
}

/** Σ_t v_t / T; 0 when there are no tokens. */
export function tokenMean(values: ArrayLike<number>): number {
  let sum = 0;
  for (let t = 0; t < values.length; t++) sum += values[t]!;
  return tokenFraction(sum, values.length);
}

/**
 * The weights w of the options' aggregation (default `fallback`) over cuSeqlens. maxLength, when
 * given, must be an integer ≥ 1; it is read by 'seq-mean-token-sum-norm' only (the other modes
 * accept and ignore it, so one configuration can serve every mode).
 */
export function readAggregation(
  opts: { aggregation?: unknown; maxLength?: unknown }, cuSeqlens: Int32Array, where: string, fallback: Aggregation,
): Float64Array {
  const aggregation = optionalOneOf(opts.aggregation, 'aggregation', where, AGGREGATIONS, fallback);
  const maxLength = opts.maxLength === undefined
    ? undefined
    : number(opts.maxLength, 'maxLength', where, { integer: true, min: 1 });
  return aggregationWeights(cuSeqlens, aggregation, maxLength);
}

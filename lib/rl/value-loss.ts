// The clipped value-function loss of PPO (verl's compute_value_loss), with its exact gradient in
// the predicted values.
//
// Conventions: per-token arrays packed by cuSeqlens as in inputs.ts, read in float64; v_t the
// critic's new prediction, old_t its prediction at rollout time, R_t the return (rl.advantages.gae
// gives it). w_t are the aggregation weights of aggregate.ts (default 'token-mean', verl's
// default for the critic). dValues is Float32Array.
import { optionalNumber, options } from '../core/validate.js';
import { type AggregationOptions, readAggregation, tokenFraction, tokenMean, weightedSum } from './aggregate.js';
import { sameLengthArrays, sequenceOffsets } from './inputs.js';

export interface ValueLossInput extends AggregationOptions {
  values: ArrayLike<number>;
  oldValues: ArrayLike<number>;
  returns: ArrayLike<number>;
  cuSeqlens: Int32Array;
  /** c ≥ 0: the new value is clipped to [old − c, old + c]. Default 0.2. */
  clip?: number;
}

export interface ValueLossResult {
  loss: number;
  dValues: Float32Array;
  metrics: {
    /** Fraction of tokens whose clipped term is strictly the larger (verl's vf_clipfrac). */
    clipFrac: number;
    /** Mean over tokens of v. */
    meanValue: number;
  };
}

/**
 * loss = ½ agg(max((v − R)², (clip(v, old − c, old + c) − R)²)).
 * ∂loss/∂v_t = w_t (v_t − R_t) where the unclipped term is taken, 0 where the clipped term is
 * strictly larger (it does not depend on v there); at a tie the unclipped term is taken.
 */
export function valueLoss(input: ValueLossInput): ValueLossResult {
  const where = 'rl.valueLoss';
  const opts = options(input, ['values', 'oldValues', 'returns', 'cuSeqlens', 'clip', 'aggregation', 'maxLength'], where);
  const arrays = sameLengthArrays(where, { values: opts.values, oldValues: opts.oldValues, returns: opts.returns });
  const tokens = arrays.values.length;
  const cuSeqlens = sequenceOffsets(opts.cuSeqlens, tokens, where);
  const clip = optionalNumber(opts.clip, 'clip', where, 0.2, { min: 0 });
  const weights = readAggregation(opts, cuSeqlens, where, 'token-mean');

  const losses = new Float64Array(tokens);
  const dValues = new Float32Array(tokens);
  let clippedCount = 0;
  for (let t = 0; t < tokens; t++) {
    const [value, old, target] = [arrays.values[t]!, arrays.oldValues[t]!, arrays.returns[t]!];
    const unclipped = (value - target) ** 2;
    const clipped = (Math.min(Math.max(value, old - clip), old + clip) - target) ** 2;
    if (clipped > unclipped) {
      losses[t] = clipped;
      clippedCount++;
    } else {
      losses[t] = unclipped;
      dValues[t] = weights[t]! * (value - target);
    }
  }
  return {
    loss: 0.5 * weightedSum(losses, weights),
    dValues,
    metrics: { clipFrac: tokenFraction(clippedCount, tokens), meanValue: tokenMean(arrays.values) },
  };
}
